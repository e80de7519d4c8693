"""Schema migrations (Alembic): `migrate(url)` brings a store to the newest revision.

An empty database is built from the first revision. A store written before migrations existed
(`metadata.create_all`, no `alembic_version` table) holds exactly revision 0001's schema: it is
stamped there and then upgraded, so its rows are kept.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import structlog
from sqlalchemy import Connection, Engine, inspect, text
from sqlalchemy.exc import OperationalError, ProgrammingError

from analyzer.errors import UserError
from analyzer.store.sql import IMMEDIATE, make_engine

if TYPE_CHECKING:
    from alembic.config import Config

log = structlog.get_logger(__name__)

SCRIPTS = Path(__file__).resolve().parent / "migrations"
BASELINE = "0001"  # the create_all schema
# The newest revision, known without Alembic (~10 MB and a quarter second of imports): every start but the first
# finds the store at it and opens it without importing Alembic. tests/test_migrations.py checks it is the scripts' head.
HEAD = "0004"


def _config(conn: Connection) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(SCRIPTS))
    config.attributes["connection"] = conn
    return config


def head() -> str:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory(str(SCRIPTS))
    found = script.get_current_head()
    assert found is not None
    return found


def current(conn: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(conn).get_current_revision()


def at_head(conn: Connection) -> bool:
    """The store's one alembic_version row is HEAD (plain SQL; anything else is left to Alembic to read)."""
    if not inspect(conn).has_table("alembic_version"):
        return False
    return conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [HEAD]


class SchemaOutdated(UserError):
    """The store's schema is not the one this version writes."""


def require_head(engine: Engine) -> None:
    with engine.connect() as conn:
        if at_head(conn):
            return
        found = current(conn)
    if found != head():
        url = engine.url.render_as_string(hide_password=True)
        raise SchemaOutdated(f"--db: the history store at {url} has schema revision {found or 'none'}, this version "
                             f"needs {head()}: run `canary-analyzer db upgrade --db URL`")


def _upgrade(engine: Engine) -> str | None:
    with engine.connect() as conn:
        if at_head(conn):
            return None
    from alembic import command

    with engine.connect() as conn:
        # SQLite: take the write lock first, so processes opening one new file at once migrate one by one.
        conn.execution_options(**{IMMEDIATE: True})
        with conn.begin():
            before = current(conn)
            if before == head():
                return None  # another process did it while this one waited
            tables = set(inspect(conn).get_table_names())
            config = _config(conn)
            if before is None and "rollouts" in tables:
                command.stamp(config, BASELINE)  # written by create_all before migrations existed
            command.upgrade(config, "head")
    return before or ("pre-migration" if "rollouts" in tables else "empty")


def migrate(target: str | Engine) -> None:
    """Upgrade the store at `target` (a URL or an engine) to the newest schema. Safe to call on every start."""
    engine = make_engine(target) if isinstance(target, str) else target
    try:
        try:
            before = _upgrade(engine)
        except (OperationalError, ProgrammingError):
            # Another process migrated at the same moment: once it is done there is nothing left to do.
            with engine.connect() as conn:
                if current(conn) != head():
                    raise
            before = None
        if before is not None:
            log.info("store migrated", url=engine.url.render_as_string(hide_password=True), was=before, now=head())
    finally:
        if isinstance(target, str):
            engine.dispose()
