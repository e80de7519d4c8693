"""Retention: delete finished rollouts older than a limit, and Flagger webhook releases not called for as long.
Off unless asked; running rollouts are never touched."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy import delete, func, inspect, select

from analyzer.store import hook_releases
from analyzer.store.history import Source, _engine
from analyzer.store.schema import rollouts
from analyzer.store.sql import IMMEDIATE, SqlStore, make_engine

log = structlog.get_logger(__name__)


def prune(source: Source, older_than: timedelta, *, now: datetime | None = None, dry_run: bool = False) -> list[str]:
    """Delete the rollouts that finished before now - older_than (their ticks, verdicts, actions and events
    go with them, by cascade). Returns the ids deleted, or that would be with `dry_run`."""
    return prune_all(source, older_than, now=now, dry_run=dry_run).rollouts


@dataclass(frozen=True)
class Pruned:
    rollouts: list[str]  # ids
    hook_releases: list[tuple[str, str, str]]  # (namespace, name, checksum)


def prune_all(source: Source, older_than: timedelta, *, now: datetime | None = None, dry_run: bool = False
              ) -> Pruned:
    """`prune`, and the webhook releases last called before now - older_than (a pipeline that stopped calling
    has moved on; a release called again later starts fresh). What was deleted, or would be with `dry_run`."""
    if older_than <= timedelta(0):
        raise ValueError(f"retention: older_than {older_than} must be positive")
    cutoff = (now or datetime.now(UTC)) - older_than
    old = rollouts.c.finished_at.is_not(None) & (rollouts.c.finished_at < cutoff)
    with _engine(source):  # the store must exist: pruning never creates one (readers open it read-only)
        pass
    engine = source.engine if isinstance(source, SqlStore) else make_engine(source)
    try:
        with engine.connect() as conn:
            conn.execution_options(**{IMMEDIATE: True})  # SQLite: one writer at a time, next to a daemon
            with conn.begin():
                ids = list(conn.execute(select(rollouts.c.id).where(old).order_by(rollouts.c.finished_at)).scalars())
                # A store not upgraded since before the webhook kept its releases there has none to prune.
                has_hooks = inspect(conn).has_table(hook_releases.table.name)
                releases = hook_releases.stale(conn, cutoff) if has_hooks else []
                if ids and not dry_run:
                    conn.execute(delete(rollouts).where(rollouts.c.id.in_(ids)))
                    left = conn.execute(select(func.count()).select_from(rollouts)).scalar_one()
                    log.info("history_pruned", deleted=len(ids), kept=left, cutoff=cutoff.isoformat())
                if releases and not dry_run:
                    hook_releases.delete_stale(conn, cutoff)
                    log.info("hook_releases_pruned", deleted=len(releases), cutoff=cutoff.isoformat())
    finally:
        if not isinstance(source, SqlStore):
            engine.dispose()
    return Pruned(ids, releases)
