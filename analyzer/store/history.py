"""The analysts' read API over the history store: summaries, one rollout's story, pandas frames.

Every function takes a `SqlStore` or a database URL (`sqlite:///history.db`, `postgresql://...`,
`postgresql+psycopg2://...`) and only reads: a URL is opened read-only, so it can run next to a live
daemon, on a read-only file, and never creates or changes a database.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, Select, func, inspect, select
from sqlalchemy.exc import DBAPIError

from analyzer.model import OUTCOME_BY_PHASE, Action, MetricVerdict
from analyzer.store import codec
from analyzer.store.schema import actions, events, metadata, rollouts, ticks, verdicts
from analyzer.store.sql import (
    NoHistoryStore,
    RolloutNotFound,
    SqlStore,
    StoreUnusable,
    check_url,
    make_engine,
    shown,
    sqlite_path,
    unusable,
)
from analyzer.traces import FINDING_PREFIX, stored_traces

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "ActionRow",
    "EventRow",
    "NoHistoryStore",
    "RolloutDetail",
    "RolloutNotFound",
    "RolloutSummary",
    "StoreUnusable",
    "TimelineRow",
    "actions_frame",
    "events_frame",
    "list_rollouts",
    "rollout_detail",
    "rollout_spec",
    "rollouts_frame",
    "ticks_frame",
    "verdicts_frame",
]

Source = SqlStore | str

TICK_COLUMNS = [
    "rollout_id", "tick_id", "tick", "at", "minute", "phase", "step", "decision", "reason",
    "baseline_weight", "canary_weight", "weights", "header_route",
    "baseline_requests", "baseline_errors", "canary_requests", "canary_errors",
    "obs_start", "obs_end", "stale_series",
]
VERDICT_COLUMNS = [
    "rollout_id", "tick_id", "tick", "at", "metric", "verdict", "gate", "e_value", "threshold",
    "promotion_e_value", "ratio", "ci_lo", "ci_hi", "reason",
]
EVENT_COLUMNS = ["rollout_id", "event_id", "tick", "at", "kind", "message"]
ACTION_COLUMNS = ["rollout_id", "tick_id", "tick", "seq", "type", "action", "ok", "error", "done_at"]


@dataclass(frozen=True)
class RolloutSummary:
    id: str
    name: str
    namespace: str
    created_at: datetime
    phase: str
    outcome: str | None  # None while the rollout is still running
    started_at: datetime | None  # the first tick
    finished_at: datetime | None  # the first tick of the final terminal phase
    decision_minutes: float | None  # first tick -> terminal tick
    steps_reached: int  # weight steps entered (0: never left the header phase or the start)
    max_canary_weight: int | None
    ticks: int
    meta: Mapping[str, Any]
    label: str  # the readable name of the run (e.g. reviews-healthy-1 for a demo); the id for older rows


@dataclass(frozen=True)
class ActionRow:
    seq: int
    action: Action
    ok: bool | None  # None: intended, no result recorded (e.g. the daemon stopped in between)
    error: str | None


@dataclass(frozen=True)
class TimelineRow:
    tick_id: int
    tick: int
    at: datetime
    phase: str
    step: int
    weights: Mapping[str, int]
    decision: str
    reason: str
    baseline_requests: int | None
    baseline_errors: int | None
    canary_requests: int | None
    canary_errors: int | None
    actions: tuple[ActionRow, ...]


@dataclass(frozen=True)
class EventRow:
    tick: int
    at: datetime
    kind: str
    message: str


@dataclass(frozen=True)
class RolloutDetail:
    summary: RolloutSummary
    spec_text: str
    timeline: tuple[TimelineRow, ...]
    final_verdicts: tuple[MetricVerdict, ...]  # from the last tick that had verdicts
    final_verdicts_tick: int | None
    events: tuple[EventRow, ...]
    # The engine's trace report rows (summary and findings), kept with the rollout's last tick; () without one.
    trace_verdicts: tuple[MetricVerdict, ...] = ()

    @property
    def traces(self) -> dict[str, Any] | None:
        """{canary_traces, baseline_traces, findings: [{kind, operation, effect, ci, reason}]}, or None."""
        return stored_traces(self.trace_verdicts)


@contextmanager
def _engine(source: Source) -> Iterator[Engine]:
    if isinstance(source, SqlStore):
        yield source.engine
        return
    path = sqlite_path(check_url(source))
    # Reading must not conjure an empty database out of a mistyped path, nor write into an empty file.
    if path is not None and (not path.exists() or path.stat().st_size == 0):
        raise NoHistoryStore(f"no history store at {path}{' (an empty file)' if path.exists() else ''}")
    engine = make_engine(source, read_only=True)
    try:
        missing = sorted(t for t in metadata.tables if not inspect(engine).has_table(t))
        if "rollouts" in missing:
            raise NoHistoryStore(f"no history store at {shown(source)} (it has no rollouts table)")
        if missing:
            raise StoreUnusable(f"{shown(source)!r}: the history store lacks tables {', '.join(missing)} "
                                "(written by an older version: run `canary-analyzer db upgrade --db URL`)")
        yield engine
    except DBAPIError as exc:
        raise unusable(source, exc) from None
    finally:
        engine.dispose()


def _summaries_query() -> Select[Any]:
    agg = (
        select(
            ticks.c.rollout_id,
            func.count().label("n_ticks"),
            func.min(ticks.c.at).label("first_at"),
            func.max(ticks.c.step).label("max_step"),
            func.max(ticks.c.canary_weight).label("max_cw"),
        )
        .group_by(ticks.c.rollout_id)
        .subquery()
    )
    return select(rollouts, agg.c.n_ticks, agg.c.first_at, agg.c.max_step, agg.c.max_cw).outerjoin(
        agg, agg.c.rollout_id == rollouts.c.id
    )


def _summary(row: Any) -> RolloutSummary:
    meta = codec.decode_value(row.meta)
    minutes = None
    if row.finished_at is not None and row.first_at is not None:
        minutes = (row.finished_at - row.first_at).total_seconds() / 60.0
    return RolloutSummary(
        id=row.id,
        name=row.name,
        namespace=row.namespace,
        created_at=row.created_at,
        phase=row.phase,
        outcome=row.outcome,
        started_at=row.first_at,
        finished_at=row.finished_at,
        decision_minutes=minutes,
        steps_reached=0 if row.max_step is None else max(row.max_step + 1, 0),
        max_canary_weight=row.max_cw,
        ticks=row.n_ticks or 0,
        meta=meta,
        label=str(meta.get("label") or row.id),
    )


def list_rollouts(
    source: Source,
    *,
    name: str | None = None,
    outcome: str | None = None,
    since: datetime | timedelta | None = None,
    limit: int | None = 50,
) -> list[RolloutSummary]:
    """Newest first. `since` is a time or an age (timedelta(days=7)); `outcome="running"` lists unfinished ones."""
    known = {*OUTCOME_BY_PHASE.values(), "running"}
    if outcome is not None and outcome not in known:
        raise ValueError(f"outcome {outcome!r} is not one of {', '.join(sorted(known))}")
    query = _summaries_query()
    if name is not None:
        query = query.where(rollouts.c.name == name)
    if outcome == "running":
        query = query.where(rollouts.c.outcome.is_(None))
    elif outcome is not None:
        query = query.where(rollouts.c.outcome == outcome)
    if since is not None:
        cutoff = datetime.now(UTC) - since if isinstance(since, timedelta) else since
        query = query.where(rollouts.c.created_at >= cutoff)
    query = query.order_by(rollouts.c.created_at.desc(), rollouts.c.id.desc())
    if limit is not None:
        query = query.limit(limit)
    with _engine(source) as engine, engine.connect() as conn:
        return [_summary(row) for row in conn.execute(query)]


def rollout_detail(source: Source, rollout_id: str) -> RolloutDetail:
    """One rollout's summary, tick-by-tick timeline with actions, final verdicts and events."""
    with _engine(source) as engine, engine.connect() as conn:
        row = conn.execute(_summaries_query().where(rollouts.c.id == rollout_id)).first()
        if row is None:
            raise RolloutNotFound(rollout_id, None if isinstance(source, SqlStore) else shown(source))
        tick_rows = conn.execute(
            select(ticks).where(ticks.c.rollout_id == rollout_id).order_by(ticks.c.tick, ticks.c.id)
        ).all()
        action_rows = conn.execute(
            select(actions)
            .join(ticks, ticks.c.id == actions.c.tick_id)
            .where(ticks.c.rollout_id == rollout_id)
            .order_by(actions.c.tick_id, actions.c.seq)
        ).all()
        is_trace = verdicts.c.metric.startswith(FINDING_PREFIX, autoescape=True)
        last_judged = conn.execute(
            select(ticks.c.id, ticks.c.tick)
            .join(verdicts, verdicts.c.tick_id == ticks.c.id)
            .where(ticks.c.rollout_id == rollout_id, ~is_trace)
            .order_by(ticks.c.tick.desc(), ticks.c.id.desc())
            .limit(1)
        ).first()
        final: list[Any] = []
        if last_judged is not None:
            final = list(
                conn.execute(
                    select(verdicts.c.data).where(verdicts.c.tick_id == last_judged.id, ~is_trace)
                    .order_by(verdicts.c.id)
                ).scalars()
            )
        last_traced = conn.execute(
            select(ticks.c.id)
            .join(verdicts, verdicts.c.tick_id == ticks.c.id)
            .where(ticks.c.rollout_id == rollout_id, is_trace)
            .order_by(ticks.c.tick.desc(), ticks.c.id.desc())
            .limit(1)
        ).scalar()
        traced: list[Any] = []
        if last_traced is not None:
            traced = list(conn.execute(
                select(verdicts.c.data).where(verdicts.c.tick_id == last_traced, is_trace).order_by(verdicts.c.id)
            ).scalars())
        event_rows = conn.execute(
            select(events).where(events.c.rollout_id == rollout_id).order_by(events.c.id)
        ).all()

    by_tick: dict[int, list[ActionRow]] = {}
    for a in action_rows:
        by_tick.setdefault(a.tick_id, []).append(ActionRow(a.seq, codec.decode_action(a.action), a.ok, a.error))
    timeline = tuple(
        TimelineRow(
            tick_id=t.id, tick=t.tick, at=t.at, phase=t.phase, step=t.step, weights=t.weights,
            decision=t.decision, reason=t.reason,
            baseline_requests=t.baseline_requests, baseline_errors=t.baseline_errors,
            canary_requests=t.canary_requests, canary_errors=t.canary_errors,
            actions=tuple(by_tick.get(t.id, ())),
        )
        for t in tick_rows
    )
    return RolloutDetail(
        summary=_summary(row),
        spec_text=row.spec_text,
        timeline=timeline,
        final_verdicts=tuple(codec.decode_verdict(d) for d in final),
        final_verdicts_tick=None if last_judged is None else last_judged.tick,
        events=tuple(EventRow(e.tick, e.at, e.kind, e.message) for e in event_rows),
        trace_verdicts=tuple(codec.decode_verdict(d) for d in traced),
    )


def rollout_spec(source: Source, rollout_id: str) -> dict[str, Any]:
    """The rollout's config as recorded (the parsed spec, camelCase keys as in YAML)."""
    with _engine(source) as engine, engine.connect() as conn:
        data = conn.execute(select(rollouts.c.spec).where(rollouts.c.id == rollout_id)).scalar_one_or_none()
    if data is None:
        raise RolloutNotFound(rollout_id)
    return dict(data)


# ---- pandas exports ----


def _ids(rollout_ids: str | Sequence[str] | None) -> list[str] | None:
    return [rollout_ids] if isinstance(rollout_ids, str) else (None if rollout_ids is None else list(rollout_ids))


def _frame(rows: list[dict[str, Any]], columns: list[str], times: Sequence[str]) -> pd.DataFrame:
    import pandas as pd  # here: the service reads summaries from this module and never needs pandas (~100 MB)

    frame = pd.DataFrame(rows, columns=columns)
    for col in times:
        frame[col] = pd.to_datetime(frame[col], utc=True)
    return frame


def ticks_frame(source: Source, rollout_ids: str | Sequence[str] | None = None) -> pd.DataFrame:
    """One row per tick: weights, per-subset counts, the decision; `minute` counts from the rollout's first tick."""
    ids = _ids(rollout_ids)
    query = (
        select(ticks, rollouts.c.baseline_subset)
        .join(rollouts, rollouts.c.id == ticks.c.rollout_id)
        .order_by(rollouts.c.created_at, ticks.c.rollout_id, ticks.c.tick, ticks.c.id)
    )
    if ids is not None:
        query = query.where(ticks.c.rollout_id.in_(ids))
    rows: list[dict[str, Any]] = []
    first: dict[str, datetime] = {}
    with _engine(source) as engine, engine.connect() as conn:
        for t in conn.execute(query):
            start = first.setdefault(t.rollout_id, t.at)
            rows.append({
                "rollout_id": t.rollout_id, "tick_id": t.id, "tick": t.tick, "at": t.at,
                "minute": (t.at - start).total_seconds() / 60.0, "phase": t.phase, "step": t.step,
                "decision": t.decision, "reason": t.reason,
                "baseline_weight": t.weights.get(t.baseline_subset), "canary_weight": t.canary_weight,
                "weights": t.weights, "header_route": t.header_route,
                "baseline_requests": t.baseline_requests, "baseline_errors": t.baseline_errors,
                "canary_requests": t.canary_requests, "canary_errors": t.canary_errors,
                "obs_start": t.obs_start, "obs_end": t.obs_end, "stale_series": t.stale_series,
            })
    return _frame(rows, TICK_COLUMNS, ("at", "obs_start", "obs_end"))


def verdicts_frame(source: Source, rollout_ids: str | Sequence[str] | None = None, *,
                   with_details: bool = False) -> pd.DataFrame:
    """One row per tick x metric, with the evidence, threshold, ratio and its confidence sequence.

    `with_details` adds the verdict's `canary`, `baseline` and `details` mappings (e.g. the latency
    quantiles with their intervals) as columns of dicts."""
    ids = _ids(rollout_ids)
    extra = (verdicts.c.data,) if with_details else ()
    query = (
        select(
            ticks.c.rollout_id, verdicts.c.tick_id, ticks.c.tick, ticks.c.at, verdicts.c.metric, verdicts.c.verdict,
            verdicts.c.gate, verdicts.c.e_value, verdicts.c.threshold, verdicts.c.promotion_e_value,
            verdicts.c.ratio, verdicts.c.ci_lo, verdicts.c.ci_hi, verdicts.c.reason, *extra,
        )
        .join(ticks, ticks.c.id == verdicts.c.tick_id)
        .order_by(ticks.c.rollout_id, ticks.c.tick, ticks.c.id, verdicts.c.id)
    )
    if ids is not None:
        query = query.where(ticks.c.rollout_id.in_(ids))
    with _engine(source) as engine, engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(query)]
    columns = VERDICT_COLUMNS
    if with_details:
        columns = [*VERDICT_COLUMNS, "canary", "baseline", "details"]
        for r in rows:
            v = codec.decode_verdict(r.pop("data"))
            r.update(canary=dict(v.canary), baseline=dict(v.baseline), details=dict(v.details))
    frame = _frame(rows, columns, ("at",))
    for col in ("e_value", "threshold", "promotion_e_value", "ratio", "ci_lo", "ci_hi"):
        frame[col] = frame[col].astype("float64")  # NULL -> NaN rather than an object column
    return frame


def events_frame(source: Source, rollout_ids: str | Sequence[str] | None = None) -> pd.DataFrame:
    ids = _ids(rollout_ids)
    query = select(
        events.c.rollout_id, events.c.id.label("event_id"), events.c.tick, events.c.at, events.c.kind,
        events.c.message,
    ).order_by(events.c.rollout_id, events.c.id)
    if ids is not None:
        query = query.where(events.c.rollout_id.in_(ids))
    with _engine(source) as engine, engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(query)]
    return _frame(rows, EVENT_COLUMNS, ("at",))


def actions_frame(source: Source, rollout_ids: str | Sequence[str] | None = None) -> pd.DataFrame:
    """One row per intended (or re-applied) action with its result; ok is None while unrecorded."""
    ids = _ids(rollout_ids)
    query = (
        select(
            ticks.c.rollout_id, actions.c.tick_id, ticks.c.tick, actions.c.seq, actions.c.type, actions.c.action,
            actions.c.ok, actions.c.error, actions.c.done_at,
        )
        .join(ticks, ticks.c.id == actions.c.tick_id)
        .order_by(ticks.c.rollout_id, ticks.c.tick, ticks.c.id, actions.c.seq)
    )
    if ids is not None:
        query = query.where(ticks.c.rollout_id.in_(ids))
    with _engine(source) as engine, engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(query)]
    return _frame(rows, ACTION_COLUMNS, ("done_at",))


ROLLOUT_COLUMNS = [
    "rollout_id", "name", "namespace", "created_at", "phase", "outcome", "started_at", "finished_at",
    "decision_minutes", "steps_reached", "max_canary_weight", "ticks", "meta",
]


def rollouts_frame(source: Source, *, since: datetime | timedelta | None = None) -> pd.DataFrame:
    """One row per rollout (oldest first): outcome, decision time, steps reached; for fleet views."""
    rows = [
        {"rollout_id": s.id, "name": s.name, "namespace": s.namespace, "created_at": s.created_at,
         "phase": s.phase, "outcome": s.outcome, "started_at": s.started_at, "finished_at": s.finished_at,
         "decision_minutes": s.decision_minutes, "steps_reached": s.steps_reached,
         "max_canary_weight": s.max_canary_weight, "ticks": s.ticks, "meta": dict(s.meta)}
        for s in reversed(list_rollouts(source, since=since, limit=None))
    ]
    frame = _frame(rows, ROLLOUT_COLUMNS, ("created_at", "started_at", "finished_at"))
    frame["decision_minutes"] = frame["decision_minutes"].astype("float64")
    return frame
