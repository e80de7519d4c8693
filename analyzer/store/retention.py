"""Retention: delete finished rollouts older than a limit. Off unless asked; running rollouts are never touched."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy import delete, func, select

from analyzer.store.history import Source, _engine
from analyzer.store.schema import rollouts
from analyzer.store.sql import IMMEDIATE, SqlStore, make_engine

log = structlog.get_logger(__name__)


def prune(source: Source, older_than: timedelta, *, now: datetime | None = None, dry_run: bool = False) -> list[str]:
    """Delete the rollouts that finished before now - older_than (their ticks, verdicts, actions and events
    go with them, by cascade). Returns the ids deleted, or that would be with `dry_run`."""
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
                if ids and not dry_run:
                    conn.execute(delete(rollouts).where(rollouts.c.id.in_(ids)))
                    left = conn.execute(select(func.count()).select_from(rollouts)).scalar_one()
                    log.info("history_pruned", deleted=len(ids), kept=left, cutoff=cutoff.isoformat())
    finally:
        if not isinstance(source, SqlStore):
            engine.dispose()
    return ids
