"""The daemon's control data in the store: operator commands, idempotent creation, the leader lease.

The store is the truth shared by every replica: any replica writes a command or a new rollout, and
the leader (the one process that ticks) picks them up. Everything here is plain SQL that runs the
same on SQLite and PostgreSQL.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import case, insert, or_, select, text, update
from sqlalchemy.exc import IntegrityError

from analyzer.model import Command, Phase
from analyzer.store import codec
from analyzer.store.schema import commands, idempotency_keys, leases, rollout_routes, rollouts, ticks
from analyzer.store.sql import RolloutNotFound, SqlStore, StoreError

if TYPE_CHECKING:
    from analyzer.config import RolloutSpec

# Phases after which a rollout never changes again: it no longer holds its VirtualService.
FINAL_PHASES = frozenset({Phase.SUCCEEDED, Phase.ROLLED_BACK, Phase.FAILED, Phase.ABORTED})
_CREATE_LOCK = 0x43414E41  # PostgreSQL advisory lock id serialising rollout creation across replicas


class RouteBusy(StoreError):
    """Another unfinished rollout already manages the same VirtualService."""

    def __init__(self, rollout_id: str, namespace: str, virtual_service: str) -> None:
        super().__init__(f"rollout {rollout_id!r} is still running on VirtualService {namespace}/{virtual_service}; "
                         "wait for it or abort it first")
        self.rollout_id = rollout_id


@dataclass(frozen=True)
class Created:
    rollout_id: str
    created: bool  # False: the idempotency key named an earlier rollout, which is returned instead


def create_rollout(store: SqlStore, rollout_id: str, spec: RolloutSpec, spec_text: str, meta: dict, *,
                   idempotency_key: str | None = None) -> Created:
    """Insert a rollout unless the key was seen (-> that rollout) or its VirtualService is busy (-> RouteBusy)."""
    t = spec.target
    with store.write() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _CREATE_LOCK})
        if idempotency_key is not None:
            seen = conn.execute(select(idempotency_keys.c.rollout_id)
                                .where(idempotency_keys.c.key == idempotency_key)).scalar_one_or_none()
            if seen is not None:
                return Created(seen, False)
        busy = conn.execute(
            select(rollouts.c.id)
            .join(rollout_routes, rollout_routes.c.rollout_id == rollouts.c.id)
            .where(rollout_routes.c.namespace == t.namespace, rollout_routes.c.virtual_service == t.virtual_service,
                   rollouts.c.phase.not_in([p.value for p in FINAL_PHASES]))
            .limit(1)
        ).scalar_one_or_none()
        if busy is not None:
            raise RouteBusy(busy, t.namespace, t.virtual_service)
        store.insert_rollout(conn, rollout_id, spec, spec_text, meta)
        conn.execute(insert(rollout_routes).values(rollout_id=rollout_id, namespace=t.namespace,
                                                   virtual_service=t.virtual_service))
        if idempotency_key is not None:
            conn.execute(insert(idempotency_keys).values(key=idempotency_key, rollout_id=rollout_id,
                                                         created_at=datetime.now(UTC)))
    return Created(rollout_id, True)


@dataclass(frozen=True)
class Unfinished:
    id: str
    phase: str


@dataclass(frozen=True)
class RolloutRow:
    id: str
    phase: str
    spec: dict
    meta: dict
    created_at: datetime
    last_tick_at: datetime | None  # wall clock of the last recorded tick


def unfinished_rollouts(store: SqlStore, *, owner: str | None = None) -> list[Unfinished]:
    """Rollouts not in a final phase (Paused and Inconclusive included), oldest first; with `owner`, only
    those whose meta names that owner. Light: the leader runs it every poll (the owner is matched in SQL)."""
    query = (select(rollouts.c.id, rollouts.c.phase)
             .where(rollouts.c.phase.not_in([p.value for p in FINAL_PHASES]))
             .order_by(rollouts.c.created_at, rollouts.c.id))
    if owner is not None:
        query = query.where(rollouts.c.meta["owner"].as_string() == owner)
    with store.engine.connect() as conn:
        return [Unfinished(r.id, r.phase) for r in conn.execute(query)]


def rollout_row(store: SqlStore, rollout_id: str) -> RolloutRow:
    """What the leader needs to run a rollout: its spec, meta, creation and last tick times."""
    with store.engine.connect() as conn:
        r = conn.execute(select(rollouts.c.id, rollouts.c.phase, rollouts.c.spec, rollouts.c.meta,
                                rollouts.c.created_at).where(rollouts.c.id == rollout_id)).first()
        if r is None:
            raise RolloutNotFound(rollout_id)
        last = conn.execute(select(ticks.c.recorded_at).where(ticks.c.rollout_id == rollout_id)
                            .order_by(ticks.c.id.desc()).limit(1)).scalar_one_or_none()
    return RolloutRow(r.id, r.phase, r.spec, codec.decode_value(r.meta) or {}, r.created_at, last)


def last_tick(store: SqlStore, rollout_id: str) -> int | None:
    """The number of the rollout's last recorded tick, None before its first."""
    with store.engine.connect() as conn:
        return conn.execute(select(ticks.c.tick).where(ticks.c.rollout_id == rollout_id)
                            .order_by(ticks.c.id.desc()).limit(1)).scalar_one_or_none()


# ---- operator commands ----

IGNORED = -1  # the tick "number" of a command that arrived after its rollout finished


@dataclass(frozen=True)
class PendingCommand:
    id: int
    rollout_id: str
    command: Command


def enqueue_command(store: SqlStore, rollout_id: str, command: Command) -> int:
    with store.write() as conn:
        if conn.execute(select(rollouts.c.id).where(rollouts.c.id == rollout_id)).first() is None:
            raise RolloutNotFound(rollout_id)
        key = conn.execute(insert(commands).values(rollout_id=rollout_id, command=command.value,
                                                   created_at=datetime.now(UTC))).inserted_primary_key
    assert key is not None
    return int(key[0])


def pending_commands(store: SqlStore, rollout_id: str | None = None, *, after_tick: int | None = None
                     ) -> list[PendingCommand]:
    """Commands not taken yet, oldest first; with `after_tick`, also those claimed for a later, unrecorded tick
    (the process died between the claim and the tick)."""
    pending = commands.c.tick.is_(None)
    if after_tick is not None:
        pending = or_(pending, commands.c.tick > after_tick)
    query = select(commands.c.id, commands.c.rollout_id, commands.c.command).where(pending).order_by(commands.c.id)
    if rollout_id is not None:
        query = query.where(commands.c.rollout_id == rollout_id)
    with store.engine.connect() as conn:
        return [PendingCommand(r.id, r.rollout_id, Command(r.command)) for r in conn.execute(query)]


def claim_command(store: SqlStore, command_id: int, tick: int) -> None:
    """Mark the command as applied by tick number `tick`, before that tick runs."""
    with store.write() as conn:
        conn.execute(update(commands).where(commands.c.id == command_id).values(tick=tick))


# ---- the leader lease ----


class StoreLease:
    """Leader election on a row of the store: holder + expiry, taken and renewed with one conditional UPDATE.

    The same small interface as a Kubernetes Lease (`analyzer.kube.lease`), so either can back the daemon.
    A holder counts as leader only until `ttl` after its last successful renewal started, by its own
    monotonic clock; it must renew well before that (the daemon renews every ttl/3).
    """

    def __init__(self, store: SqlStore, identity: str, *, name: str = "canary-analyzer-leader",
                 ttl: float = 15.0) -> None:
        self.store = store
        self.identity = identity
        self.name = name
        self.ttl = ttl
        self.renew_every = ttl / 3
        self.margin = ttl / 3  # a tick starts only with this much of the lease left
        self._valid_until = 0.0  # time.monotonic() until which we may act as the leader

    def try_acquire(self) -> bool:
        """Take the lease when it is free or expired, or renew it when we hold it. True when we hold it now."""
        started = time.monotonic()
        now = datetime.now(UTC)
        row = leases.c
        try:
            with self.store.write() as conn:
                if conn.execute(select(row.name).where(row.name == self.name)).first() is None:
                    conn.execute(insert(leases).values(name=self.name, holder=None, expires_at=now, transitions=0))
        except IntegrityError:
            pass  # another replica created the row first
        with self.store.write() as conn:
            taken = conn.execute(
                update(leases)
                .where(row.name == self.name,
                       or_(row.holder == self.identity, row.holder.is_(None), row.expires_at < now))
                .values(holder=self.identity, expires_at=now + timedelta(seconds=self.ttl),
                        transitions=row.transitions + case((row.holder == self.identity, 0), else_=1))
            ).rowcount
        self._valid_until = started + self.ttl if taken == 1 else 0.0
        return taken == 1

    def held(self, margin: float = 0.0) -> bool:
        """Whether we still hold the lease for at least `margin` seconds without renewing."""
        return time.monotonic() + margin < self._valid_until

    def release(self) -> None:
        self._valid_until = 0.0
        with self.store.write() as conn:
            conn.execute(update(leases).where(leases.c.name == self.name, leases.c.holder == self.identity)
                         .values(holder=None, expires_at=datetime.now(UTC)))

    def holder(self) -> str | None:
        with self.store.engine.connect() as conn:
            row = conn.execute(select(leases.c.holder, leases.c.expires_at).where(leases.c.name == self.name)).first()
        if row is None or row.holder is None or row.expires_at < datetime.now(UTC):
            return None
        return str(row.holder)
