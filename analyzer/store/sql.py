"""SqlStore: the `Store` port on SQLAlchemy, for SQLite (embedded default) and PostgreSQL.

Each tick is written in one transaction by `record_intent` before any action runs; `record_results`
fills in the outcome of those actions afterwards. A crash between the two leaves intents with
`ok IS NULL`, which is exactly what a restarted daemon needs to see.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import structlog
from sqlalchemy import URL, Connection, Engine, create_engine, event, func, insert, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError

from analyzer.errors import NotFound, UserError
from analyzer.model import (
    OUTCOME_BY_PHASE,
    TERMINAL_PHASES,
    ActionResult,
    Decision,
    MetricVerdict,
    Observation,
    Phase,
    RolloutState,
)
from analyzer.ports import Clock
from analyzer.store import codec
from analyzer.store.schema import actions, events, rollouts, ticks
from analyzer.store.schema import verdicts as verdicts_table

if TYPE_CHECKING:
    from analyzer.config import RolloutSpec

log = structlog.get_logger(__name__)

IMMEDIATE = _IMMEDIATE = "canary_begin_immediate"  # execution option: take SQLite's write lock at BEGIN
SQLITE_BUSY_TIMEOUT_MS = 30_000


# The URL forms the store accepts, each with a declared driver (pyproject.toml): sqlite3 is in Python,
# psycopg2-binary is a dependency. SQLAlchemy 2.1 reads a bare `postgresql://` as psycopg 3, which is not
# a dependency: check_url names psycopg2 explicitly.
DRIVERS = {"sqlite": ("pysqlite",), "postgresql": ("psycopg2",)}
URL_FORMS = "sqlite:///PATH, postgresql://USER@HOST[:PORT]/DB or postgresql+psycopg2://..."
_SQLITE_MAGIC = b"SQLite format 3\x00"


class StoreError(Exception):
    """Base of the store's own errors."""


class StoreUnusable(StoreError, UserError):
    """The history store URL cannot be used: not a URL, an unknown scheme, not a database, unreachable."""


class NoHistoryStore(StoreError, NotFound, FileNotFoundError):
    """A read found no history store at the URL (no file, an empty file, no tables)."""


class RolloutNotFound(StoreError, NotFound, KeyError):
    def __init__(self, rollout_id: str, where: str | None = None) -> None:
        super().__init__(rollout_id)
        self.rollout_id = rollout_id
        self.where = where

    def __str__(self) -> str:
        return f"no rollout with id {self.rollout_id!r} in the history store{' at ' + self.where if self.where else ''}"


def shown(url: str | URL) -> str:
    """The URL as it may be printed: without its password."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return str(url)


def check_url(url: str) -> URL:
    """The parsed URL, or StoreUnusable naming what is wrong with it. Touches no database."""
    try:
        u = make_url(url)
    except ArgumentError:
        raise StoreUnusable(f"{url!r} is not a database URL (use {URL_FORMS})") from None
    given = shown(url)
    backend = u.get_backend_name()
    if backend == "postgresql" and "+" not in u.drivername:
        u = u.set(drivername="postgresql+psycopg2")
    driver = u.get_driver_name()
    if backend not in DRIVERS:
        raise StoreUnusable(f"{given!r}: unknown scheme {u.drivername!r} (use {URL_FORMS})")
    if driver not in DRIVERS[backend]:
        raise StoreUnusable(f"{given!r}: driver {driver!r} is not supported (use {URL_FORMS})")
    path = sqlite_path(u)
    if path is not None:
        if path.is_dir():
            raise StoreUnusable(f"{given!r}: {path} is a directory, not a database file")
        if path.is_file():
            try:
                with path.open("rb") as f:
                    head = f.read(len(_SQLITE_MAGIC))
            except OSError as exc:
                raise StoreUnusable(f"{given!r}: cannot read {path}: {exc.strerror}") from None
            if head and head != _SQLITE_MAGIC:
                raise StoreUnusable(f"{given!r}: {path} is not a SQLite database")
    return u


def sqlite_path(u: URL) -> Path | None:
    """The file of a SQLite URL; None for other databases, in-memory ones and `file:` URIs."""
    if u.get_backend_name() != "sqlite" or u.database in (None, "", ":memory:") or u.database.startswith("file:"):
        return None
    return Path(u.database).expanduser()


def unusable(url: str, exc: DBAPIError) -> StoreUnusable:
    """A driver error on opening the store, as one line."""
    first = str(exc.orig).strip().splitlines()[0] if str(exc.orig).strip() else type(exc.orig).__name__
    return StoreUnusable(f"{shown(url)!r}: cannot use the history store: {first}")


class RolloutExists(StoreError, ValueError):
    def __init__(self, rollout_id: str) -> None:
        super().__init__(f"rollout {rollout_id!r} already exists in the history store")


class TickNotFound(StoreError, KeyError):
    def __init__(self, tick_id: int) -> None:
        super().__init__(tick_id)
        self.tick_id = tick_id

    def __str__(self) -> str:
        return f"no tick with id {self.tick_id} in the history store"


def make_engine(url: str, *, read_only: bool = False) -> Engine:
    """An engine with the JSON codec's strict serialiser; SQLite gets WAL, a busy timeout and FKs.

    `read_only` opens SQLite with mode=ro (and sets no journal mode) and PostgreSQL with read-only
    transactions, so a read never writes, not even into an empty file.
    """
    u = check_url(url)
    if u.get_backend_name() != "sqlite":
        args = {"options": "-c default_transaction_read_only=on"} if read_only else {}
        return create_engine(u, json_serializer=codec.dumps, pool_pre_ping=True, connect_args=args)
    path = sqlite_path(u)
    if read_only and path is not None:
        engine = create_engine(u, json_serializer=codec.dumps, creator=_read_only_sqlite(path))
        event.listen(engine, "connect", _sqlite_connect_ro)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreUnusable(f"{shown(url)!r}: cannot create {path.parent}: {exc.strerror}") from None
    engine = create_engine(u, json_serializer=codec.dumps, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
    event.listen(engine, "connect", _sqlite_connect)
    event.listen(engine, "begin", _sqlite_begin)
    return engine


def _read_only_sqlite(path: Path) -> Callable[[], sqlite3.Connection]:
    """Connections that cannot write. A WAL database needs its -shm file even to read; where it cannot be
    created (a read-only directory) nobody can be writing either, so the file is read as it is (immutable)."""
    uri = f"file:{quote(str(path.resolve()))}?mode=ro"
    timeout = SQLITE_BUSY_TIMEOUT_MS / 1000

    def connect() -> sqlite3.Connection:
        conn = None
        try:
            conn = sqlite3.connect(uri, uri=True, timeout=timeout, check_same_thread=False)
            conn.execute("PRAGMA schema_version").fetchone()
            return conn
        except sqlite3.OperationalError:
            if conn is not None:
                conn.close()
            return sqlite3.connect(uri + "&immutable=1", uri=True, timeout=timeout, check_same_thread=False)

    return connect


def _sqlite_connect_ro(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None
    cur = dbapi_connection.cursor()
    cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cur.close()


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy emit BEGIN itself (see _sqlite_begin); pysqlite's own handling defers it.
    dbapi_connection.isolation_level = None
    cur = dbapi_connection.cursor()
    cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")  # first: WAL below may wait for a lock
    cur.execute("PRAGMA journal_mode=WAL")  # readers never block the daemon's writes
    cur.execute("PRAGMA synchronous=NORMAL")  # durable at checkpoints; safe with WAL
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _sqlite_begin(conn: Connection) -> None:
    # A deferred transaction that reads and then writes can fail with SQLITE_BUSY at once if another
    # writer committed meanwhile; writers take the lock up front so the busy timeout applies.
    immediate = conn.get_execution_options().get(_IMMEDIATE, False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _utc(t: datetime) -> datetime:
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


class SqlStore:
    """The `Store` port on a SQL database. The schema is migrated to the newest revision on open, unless
    `migrate=False` (then a store that is not at the newest revision is refused with `SchemaOutdated`).

    `clock` is the engine's clock (virtual in simulations). Without it, times the store must invent
    (ticks without an observation, events) are derived from the rollout's own recorded times, so a
    simulated rollout's history stays on its virtual clock; created_at then uses the wall clock.
    """

    def __init__(self, url: str, *, clock: Clock | None = None, migrate: bool = True) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._clock = clock
        from analyzer.store import migrate as migrations  # the migrations import this module

        try:
            if migrate:  # one write transaction: concurrent first runs on one new SQLite file queue
                migrations.migrate(self.engine)
            else:  # a daemon told not to migrate refuses a store it cannot write, rather than failing mid-rollout
                migrations.require_head(self.engine)
        except DBAPIError as exc:
            self.engine.dispose()
            raise unusable(url, exc) from None

    def _now(self) -> datetime:
        return _utc(self._clock.now()) if self._clock else datetime.now(UTC)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> SqlStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """One write transaction (SQLite takes its write lock at BEGIN)."""
        with self._write() as conn:
            yield conn

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            conn.execution_options(**{_IMMEDIATE: True})
            with conn.begin():
                yield conn

    # ---- Store protocol ----

    def create_rollout(self, rollout_id: str, spec: RolloutSpec, spec_text: str, meta: dict) -> None:
        with self._write() as conn:
            self.insert_rollout(conn, rollout_id, spec, spec_text, meta)
        log.info("rollout_created", rollout=rollout_id, target=spec.name)

    def insert_rollout(self, conn: Connection, rollout_id: str, spec: RolloutSpec, spec_text: str,
                       meta: dict) -> None:
        """The rollout's row, inside the caller's write transaction (the daemon checks conflicts in the same one)."""
        initial = RolloutState(rollout=rollout_id)
        if conn.execute(select(rollouts.c.id).where(rollouts.c.id == rollout_id)).first():
            raise RolloutExists(rollout_id)
        conn.execute(
            insert(rollouts).values(
                id=rollout_id,
                name=spec.name,
                namespace=spec.target.namespace,
                baseline_subset=spec.target.baseline.subset,
                canary_subset=spec.target.canary.subset,
                spec_text=spec_text,
                spec=spec.model_dump(mode="json", by_alias=True),
                meta=codec.encode_value(meta),
                initial_state=codec.encode_state(initial),
                created_at=self._now(),
                interval_seconds=spec.timing.interval,
                phase=initial.phase.value,
                outcome=None,
                finished_at=None,
            )
        )

    def record_intent(
        self,
        rollout_id: str,
        state: RolloutState,
        observation: Observation | None,
        verdicts: Sequence[MetricVerdict],
        decision: Decision,
    ) -> int:
        with self._write() as conn:
            row = conn.execute(
                select(
                    rollouts.c.canary_subset, rollouts.c.phase, rollouts.c.outcome, rollouts.c.finished_at,
                    rollouts.c.interval_seconds, rollouts.c.created_at,
                ).where(rollouts.c.id == rollout_id)
            ).first()
            if row is None:
                raise RolloutNotFound(rollout_id)
            previous = conn.execute(
                select(ticks.c.at).where(ticks.c.rollout_id == rollout_id).order_by(ticks.c.id.desc()).limit(1)
            ).scalar_one_or_none()
            at = self._tick_time(state, observation, previous, timedelta(seconds=row.interval_seconds))
            tick_row = _tick_row(rollout_id, state, observation, decision, at, row.canary_subset)
            tick_row["recorded_at"] = datetime.now(UTC)
            key = conn.execute(insert(ticks), tick_row).inserted_primary_key
            assert key is not None  # a single-row INSERT always has one
            tick_id = int(key[0])
            if verdicts:
                conn.execute(insert(verdicts_table), _verdict_rows(tick_id, verdicts))
            if decision.actions:
                conn.execute(insert(actions), _action_rows(tick_id, decision))
            # finished_at is when the current terminal phase began; a rollout resumed from a terminal
            # phase (e.g. Paused) is unfinished again, and Paused -> Succeeded finishes anew.
            finished_at = None
            if state.phase in TERMINAL_PHASES:
                same = row.phase == state.phase.value and row.finished_at is not None
                finished_at = row.finished_at if same else at
            phase = (state.phase.value, OUTCOME_BY_PHASE.get(state.phase), finished_at)
            if phase != (row.phase, row.outcome, row.finished_at):  # most ticks stay in their phase
                conn.execute(
                    update(rollouts)
                    .where(rollouts.c.id == rollout_id)
                    .values(phase=phase[0], outcome=phase[1], finished_at=phase[2])
                )
        log.debug(
            "tick_recorded", rollout=rollout_id, tick=state.tick, tick_id=tick_id,
            phase=state.phase.value, decision=decision.kind,
        )
        return tick_id

    def record_results(self, tick_id: int, results: Sequence[ActionResult]) -> None:
        now = datetime.now(UTC)
        with self._write() as conn:
            if conn.execute(select(ticks.c.id).where(ticks.c.id == tick_id)).first() is None:
                raise TickNotFound(tick_id)
            rows = conn.execute(
                select(actions.c.id, actions.c.seq, actions.c.action, actions.c.ok)
                .where(actions.c.tick_id == tick_id)
                .order_by(actions.c.seq)
            ).all()
            pending = [(r.id, r.action) for r in rows if r.ok is None]
            next_seq = max((r.seq for r in rows), default=-1) + 1
            for result in results:
                encoded = codec.encode_action(result.action)
                match = next((i for i, (_, a) in enumerate(pending) if a == encoded), None)
                values = {"ok": result.ok, "error": result.error, "done_at": now}
                if match is not None:
                    row_id, _ = pending.pop(match)
                    conn.execute(update(actions).where(actions.c.id == row_id).values(**values))
                else:
                    # Not intended in this tick (e.g. weights re-applied after a restart): keep it anyway.
                    log.warning("action_result_without_intent", tick_id=tick_id, action=encoded)
                    conn.execute(
                        insert(actions).values(
                            tick_id=tick_id, seq=next_seq, type=encoded["type"], action=encoded, **values
                        )
                    )
                    next_seq += 1

    def record_event(self, rollout_id: str, tick: int, kind: str, message: str) -> None:
        with self._write() as conn:
            if conn.execute(select(rollouts.c.id).where(rollouts.c.id == rollout_id)).first() is None:
                raise RolloutNotFound(rollout_id)
            # No clock: the time of the latest tick up to this one keeps events on the ticks' clock.
            latest_tick_at = (
                select(ticks.c.at)
                .where(ticks.c.rollout_id == rollout_id, ticks.c.tick <= tick)
                .order_by(ticks.c.id.desc())
                .limit(1)
            )
            at = self._now() if self._clock else conn.execute(latest_tick_at).scalar_one_or_none()
            conn.execute(
                insert(events).values(
                    rollout_id=rollout_id, tick=tick, at=at or datetime.now(UTC), kind=kind, message=message
                )
            )

    def load_state(self, rollout_id: str) -> RolloutState | None:
        with self.engine.connect() as conn:
            # By row id: a tick may hold a follow-up decision (e.g. Failed after repeated action failures).
            data = conn.execute(
                select(ticks.c.state).where(ticks.c.rollout_id == rollout_id).order_by(ticks.c.id.desc()).limit(1)
            ).scalar_one_or_none()
            if data is None:
                data = conn.execute(
                    select(rollouts.c.initial_state).where(rollouts.c.id == rollout_id)
                ).scalar_one_or_none()
        return None if data is None else codec.decode_state(data)

    def active_rollouts(self) -> list[str]:
        terminal = [p.value for p in TERMINAL_PHASES]
        with self.engine.connect() as conn:
            return list(
                conn.execute(
                    select(rollouts.c.id)
                    .where(rollouts.c.phase.not_in(terminal))
                    .order_by(rollouts.c.created_at, rollouts.c.id)
                ).scalars()
            )

    def _tick_time(
        self, state: RolloutState, observation: Observation | None, previous: datetime | None, interval: timedelta
    ) -> datetime:
        """When the tick happened, on the engine's clock where it can be told."""
        if observation is not None:
            return _utc(observation.end)
        if state.decided_at is not None and state.phase in TERMINAL_PHASES:
            return _utc(state.decided_at)
        if self._clock is not None:
            return self._now()
        if previous is None:
            return _utc(state.started_at) if state.started_at else datetime.now(UTC)
        # A step entered on this tick carries its time; otherwise the engine ticks once per interval.
        if state.step_started_at is not None and _utc(state.step_started_at) > previous:
            return _utc(state.step_started_at)
        return previous + interval

    # ---- small extras used by the CLI and tests ----

    def tick_count(self, rollout_id: str) -> int:
        with self.engine.connect() as conn:
            query = select(func.count()).select_from(ticks).where(ticks.c.rollout_id == rollout_id)
            return int(conn.execute(query).scalar_one())

    def phase_of(self, rollout_id: str) -> Phase:
        with self.engine.connect() as conn:
            value = conn.execute(select(rollouts.c.phase).where(rollouts.c.id == rollout_id)).scalar_one_or_none()
        if value is None:
            raise RolloutNotFound(rollout_id)
        return Phase(value)


def _tick_row(
    rollout_id: str,
    state: RolloutState,
    observation: Observation | None,
    decision: Decision,
    at: datetime,
    canary_subset: str,
) -> dict[str, Any]:
    obs = observation
    base, can = (obs.baseline, obs.canary) if obs else (None, None)
    return {
        "rollout_id": rollout_id,
        "tick": state.tick,
        "at": at,
        "phase": state.phase.value,
        "step": state.step,
        "weights": dict(state.weights),
        "canary_weight": state.weights.get(canary_subset),
        "header_route": state.header_route,
        "decision": decision.kind,
        "reason": decision.reason,
        "state": codec.encode_state(state),
        "obs_start": _utc(obs.start) if obs else None,
        "obs_end": _utc(obs.end) if obs else None,
        "baseline_requests": base.requests if base else None,
        "baseline_errors": base.errors if base else None,
        "baseline_le": list(base.latency_le) if base else None,
        "canary_requests": can.requests if can else None,
        "canary_errors": can.errors if can else None,
        "canary_le": list(can.latency_le) if can else None,
        "stale_series": list(obs.stale_series) if obs else None,
        "observation": codec.encode_observation(obs) if obs else None,
    }


def _verdict_rows(tick_id: int, items: Sequence[MetricVerdict]) -> list[dict[str, Any]]:
    rows = []
    for v in items:
        data = codec.encode_verdict(v)
        rows.append({
            "tick_id": tick_id,
            "metric": v.metric,
            "verdict": v.verdict.value,
            "gate": v.gate,
            "e_value": v.e_value,
            "threshold": v.threshold,
            "promotion_e_value": v.promotion_e_value,
            "ratio": v.ratio,
            "ci_lo": v.ci[0] if v.ci else None,
            "ci_hi": v.ci[1] if v.ci else None,
            "reason": v.reason,
            "details": data["details"],  # encoded once, stored in both columns
            "data": data,
        })
    return rows


def _action_rows(tick_id: int, decision: Decision) -> list[dict[str, Any]]:
    rows = []
    for seq, action in enumerate(decision.actions):
        encoded = codec.encode_action(action)
        rows.append({"tick_id": tick_id, "seq": seq, "type": encoded["type"], "action": encoded, "ok": None})
    return rows
