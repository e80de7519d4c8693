"""Flagger webhook releases in the store: the evidence of one release (namespace, name, checksum) of a canary.

Every replica serves the webhook and a pipeline's successive calls land on any of them, so the release lives
here, not in a process. Writes are compare-and-set on `version`: a call reads the row, judges, and writes
only if nobody wrote since it read (`put` returns False otherwise and the caller reads again). That keeps
two replicas from judging one interval twice or losing an update, without holding a lock (or SQLite's
write lock) while the metric source is queried. Plain SQLAlchemy Core: the same on SQLite and PostgreSQL.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from analyzer.evidence import Evidence
from analyzer.model import MetricVerdict
from analyzer.store import codec
from analyzer.store.schema import hook_releases as table
from analyzer.store.sql import SqlStore


@dataclass
class HookRelease:
    namespace: str
    name: str
    checksum: str
    spec_name: str
    spec_text: str
    evidence: Evidence
    last_end: datetime | None = None
    intervals: int = 0
    verdicts: list[MetricVerdict] = field(default_factory=list)
    failed: dict[str, Any] | None = None  # the answer given once a regression was proven
    scenario: str | None = None  # serve --sim: None for a live release
    seed: int | None = None
    canary_weight: int | None = None
    sim_state: dict[str, Any] | None = None  # the simulated mesh's random generator after the last interval
    version: int = 0  # 0: not stored yet
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        return self.namespace, self.name, self.checksum


def _where(namespace: str, name: str, checksum: str) -> Any:
    return (table.c.namespace == namespace) & (table.c.name == name) & (table.c.checksum == checksum)


def get(store: SqlStore, namespace: str, name: str, checksum: str) -> HookRelease | None:
    with store.engine.connect() as conn:
        r = conn.execute(select(table).where(_where(namespace, name, checksum))).first()
    if r is None:
        return None
    return HookRelease(
        namespace=r.namespace, name=r.name, checksum=r.checksum, spec_name=r.spec_name, spec_text=r.spec_text,
        evidence=Evidence.from_json(codec.decode_value(r.evidence)), last_end=r.last_end, intervals=r.intervals,
        verdicts=[codec.decode_verdict(v) for v in r.verdicts], failed=codec.decode_value(r.failed),
        scenario=r.scenario, seed=r.seed, canary_weight=r.canary_weight, sim_state=codec.decode_value(r.sim_state),
        version=r.version, created_at=r.created_at,
        updated_at=r.updated_at,
    )


def put(store: SqlStore, release: HookRelease, now: datetime) -> bool:
    """Insert a new release (version 0) or update the one read at `release.version`. False: another call wrote
    first (it created the release, or judged since this one read it); nothing was written, read again."""
    values = {
        "evidence": codec.encode_evidence(release.evidence),
        "last_end": release.last_end,
        "intervals": release.intervals,
        "verdicts": [codec.encode_verdict(v) for v in release.verdicts],
        "failed": None if release.failed is None else codec.encode_value(release.failed),
        "sim_state": None if release.sim_state is None else codec.encode_value(release.sim_state),
        "version": release.version + 1,
        "updated_at": now,
    }
    with store.write() as conn:
        if release.version == 0:
            return _insert(conn, release, values, now)
        done = conn.execute(update(table).where(_where(*release.key), table.c.version == release.version)
                            .values(**values))
        return done.rowcount == 1


def _insert(conn: Connection, release: HookRelease, values: dict[str, Any], now: datetime) -> bool:
    row = {"namespace": release.namespace, "name": release.name, "checksum": release.checksum,
           "spec_name": release.spec_name, "spec_text": release.spec_text, "scenario": release.scenario,
           "seed": release.seed, "canary_weight": release.canary_weight, "created_at": now, **values}
    # SQLite: the write lock is held since BEGIN, so the check is exact. PostgreSQL: two first calls may both
    # miss the row; the primary key refuses the second insert.
    if conn.execute(select(table.c.version).where(_where(*release.key))).first() is not None:
        return False
    nested = conn.begin_nested()
    try:
        conn.execute(insert(table).values(**row))
    except IntegrityError:
        nested.rollback()
        return False
    nested.commit()
    return True


def touch(store: SqlStore, namespace: str, name: str, checksum: str, now: datetime) -> None:
    """Record a call that changed nothing (a release already failed), so retention keeps it while it is called."""
    with store.write() as conn:
        conn.execute(update(table).where(_where(namespace, name, checksum), table.c.updated_at < now)
                     .values(updated_at=now))


def stale(conn: Connection, cutoff: datetime) -> list[tuple[str, str, str]]:
    """Releases not called since `cutoff`, oldest first."""
    query = (select(table.c.namespace, table.c.name, table.c.checksum).where(table.c.updated_at < cutoff)
             .order_by(table.c.updated_at))
    return [(r.namespace, r.name, r.checksum) for r in conn.execute(query)]


def delete_stale(conn: Connection, cutoff: datetime) -> int:
    return conn.execute(delete(table).where(table.c.updated_at < cutoff)).rowcount
