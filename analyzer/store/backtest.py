"""Backtest from the history store: read each rollout's recorded ticks and replay them (`analyzer.backtest`).

`backtest(source, spec, ...)` returns the per-rollout results and the fleet totals; `backtest_frame`
returns them as a pandas frame for notebooks. Read-only, so it can run next to a live daemon.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import Connection, select

from analyzer.backtest import (
    OUTCOME_BY_DECISION,
    FleetTotals,
    NotReplayable,
    RecordedTick,
    RolloutBacktest,
    backtest_rollout,
    fleet_totals,
    query_lag,
)
from analyzer.config import RolloutSpec, parse_spec
from analyzer.model import DecisionKind, RolloutState
from analyzer.store import codec
from analyzer.store.history import Source, _engine
from analyzer.store.schema import rollouts, ticks, verdicts
from analyzer.store.sql import RolloutNotFound
from analyzer.traces import FINDING_PREFIX

FRAME_COLUMNS = [
    "rollout_id", "name", "namespace", "recorded_outcome", "recorded_minute", "new_outcome", "new_minute",
    "changed", "difference_tick", "difference_minute", "recorded_decision", "recorded_reason", "new_decision",
    "new_reason", "skipped",
]


@dataclass(frozen=True)
class Skipped:
    rollout_id: str
    why: str


@dataclass(frozen=True)
class BacktestRun:
    results: tuple[RolloutBacktest, ...]
    skipped: tuple[Skipped, ...]
    totals: FleetTotals
    names: dict[str, tuple[str, str]]  # rollout id -> (name, namespace)

    def to_json(self) -> dict[str, Any]:
        return {
            "rollouts": [r.to_json() for r in self.results],
            "skipped": [{"rollout_id": s.rollout_id, "why": s.why} for s in self.skipped],
            "totals": self.totals.to_json(),
        }


def tick_time(decision: DecisionKind, state: RolloutState, at: datetime, lag: float) -> datetime:
    """The engine's clock at a tick. The store keeps the observation's end (clock - lag) as `at`; the
    decisions that stamp the state carry the clock exactly."""
    if decision is DecisionKind.START and state.started_at is not None:
        return state.started_at
    if decision is DecisionKind.ADVANCE and state.step_started_at is not None:
        return state.step_started_at
    if decision in OUTCOME_BY_DECISION and state.decided_at is not None:  # settling decisions stamp decided_at
        return state.decided_at
    # Without an observation `at` is the previous tick's + one interval, which is on the same clock - lag.
    return at + timedelta(seconds=lag)


def recorded_ticks(conn: Connection, rollout_id: str, lag: float) -> list[RecordedTick]:
    rows = conn.execute(
        select(ticks.c.id, ticks.c.tick, ticks.c.at, ticks.c.state, ticks.c.decision, ticks.c.reason,
               ticks.c.observation)
        .where(ticks.c.rollout_id == rollout_id).order_by(ticks.c.id)
    ).all()
    by_tick: dict[int, list[Any]] = {}
    if rows:
        for tick_id, data in conn.execute(
            select(verdicts.c.tick_id, verdicts.c.data)
            .where(verdicts.c.tick_id.in_([r.id for r in rows])).order_by(verdicts.c.id)
        ):
            verdict = codec.decode_verdict(data)
            if not verdict.metric.startswith(FINDING_PREFIX):  # the trace report kept with the last tick
                by_tick.setdefault(tick_id, []).append(verdict)
    out = []
    for r in rows:
        state = codec.decode_state(r.state)
        decision = DecisionKind(r.decision)
        observation = None if r.observation is None else codec.decode_observation(r.observation)
        out.append(RecordedTick(r.tick, tick_time(decision, state, r.at, lag), state,
                                decision, r.reason, observation, tuple(by_tick.get(r.id, ()))))
    return out


def _selected(conn: Connection, rollout_ids: Sequence[str] | None, since: datetime | None) -> list[Any]:
    query = select(rollouts.c.id, rollouts.c.name, rollouts.c.namespace, rollouts.c.spec, rollouts.c.meta)
    if rollout_ids is not None:
        query = query.where(rollouts.c.id.in_(list(rollout_ids)))
    if since is not None:
        query = query.where(rollouts.c.created_at >= since)
    rows = conn.execute(query.order_by(rollouts.c.created_at, rollouts.c.id)).all()
    if rollout_ids is not None:
        missing = sorted(set(rollout_ids) - {r.id for r in rows})
        if missing:
            raise RolloutNotFound(missing[0])
    return rows


NewConfig = RolloutSpec | Callable[[RolloutSpec], RolloutSpec] | None


def backtest(source: Source, spec: NewConfig = None, *, rollout_ids: str | Sequence[str] | None = None,
             since: datetime | None = None) -> BacktestRun:
    """Replay the selected rollouts (all by default) under another config.

    `spec` is one config (rollouts of another name are skipped: a config is written for one target), a
    function from each rollout's recorded config to the new one (e.g. `lambda s: with_analysis(s,
    alpha=0.005)`, for a whole fleet), or None to replay each under its own config."""
    ids = [rollout_ids] if isinstance(rollout_ids, str) else rollout_ids
    results: list[RolloutBacktest] = []
    skipped: list[Skipped] = []
    names: dict[str, tuple[str, str]] = {}
    with _engine(source) as engine, engine.connect() as conn:
        for row in _selected(conn, ids, since):
            names[row.id] = (row.name, row.namespace)
            recorded_spec = parse_spec(row.spec, f"rollout {row.id} spec")
            meta = codec.decode_value(row.meta) or {}
            if isinstance(spec, RolloutSpec) and spec.name != row.name:
                skipped.append(Skipped(row.id, f"the config is for rollout {spec.name!r}, this one is {row.name!r}"))
                continue
            new_spec = recorded_spec if spec is None else spec if isinstance(spec, RolloutSpec) else spec(
                recorded_spec)
            try:
                ticks_ = recorded_ticks(conn, row.id, query_lag(recorded_spec))
                results.append(backtest_rollout(row.id, recorded_spec, new_spec, ticks_,
                                                seed=int(meta.get("seed", 0))))
            except NotReplayable as exc:
                skipped.append(Skipped(row.id, str(exc)))
    return BacktestRun(tuple(results), tuple(skipped), fleet_totals(results), names)


def backtest_frame(source: Source, spec: NewConfig = None, *,
                   rollout_ids: str | Sequence[str] | None = None, since: datetime | None = None) -> pd.DataFrame:
    """One row per rollout: recorded and new outcome and minute, and the first differing tick; the fleet
    totals are in `frame.attrs["totals"]`."""
    run = backtest(source, spec, rollout_ids=rollout_ids, since=since)
    rows: list[dict[str, Any]] = []
    for r in run.results:
        d = r.difference
        name, namespace = run.names[r.rollout_id]
        rows.append({
            "rollout_id": r.rollout_id, "name": name, "namespace": namespace,
            "recorded_outcome": r.recorded_outcome, "recorded_minute": r.recorded_minute,
            "new_outcome": r.new_outcome, "new_minute": r.new_minute, "changed": r.changed,
            "difference_tick": None if d is None else d.tick, "difference_minute": None if d is None else d.minute,
            "recorded_decision": None if d is None else d.recorded,
            "recorded_reason": None if d is None else d.recorded_reason,
            "new_decision": None if d is None else d.new, "new_reason": None if d is None else d.new_reason,
            "skipped": None,
        })
    for s in run.skipped:
        name, namespace = run.names[s.rollout_id]
        rows.append({**dict.fromkeys(FRAME_COLUMNS), "rollout_id": s.rollout_id, "name": name,
                     "namespace": namespace, "changed": False, "skipped": s.why})
    frame = pd.DataFrame(rows, columns=FRAME_COLUMNS)
    for col in ("recorded_minute", "new_minute", "difference_minute"):
        frame[col] = frame[col].astype("float64")
    frame.attrs["totals"] = run.totals.to_json()
    return frame
