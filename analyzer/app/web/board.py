"""What the dashboard shows, read from the store: the rollout list's rows and one rollout's live view.

Only reads, so every replica can serve it. Times in step and decision minutes are in the rollout's own
clock (the tick times), so a `serve --sim` run reads in simulated minutes like the rest of its history.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select

from analyzer.model import MetricVerdict, Phase
from analyzer.store import control
from analyzer.store.schema import commands, events, rollouts, ticks
from analyzer.store.sql import SqlStore
from analyzer.store.status import RolloutStatus, statuses


@dataclass(frozen=True)
class Row:
    status: RolloutStatus
    canary_subset: str
    canary_weight: int | None
    leading: MetricVerdict | None  # the gate metric closest to its rollback threshold
    in_step_s: float | None  # time since the phase or step last changed
    decision: str  # the last decision that changed something (not hold, continue or finish) ...
    reason: str  # ... and its reason; the last tick's when there is none

    @property
    def finished(self) -> bool:
        return Phase(self.status.summary.phase) in control.FINAL_PHASES


def closeness(v: MetricVerdict) -> float:
    """How far a metric's evidence has gone towards its threshold, on the log scale (1 = at the threshold)."""
    if v.e_value is None or v.threshold is None or v.threshold <= 1 or math.isnan(v.e_value):
        return -math.inf
    if v.e_value <= 0:
        return -math.inf
    return math.log(min(v.e_value, 1e300)) / math.log(v.threshold)


def leading(verdicts: tuple[MetricVerdict, ...]) -> MetricVerdict | None:
    gates = [v for v in verdicts if v.gate and v.e_value is not None]
    return max(gates, key=closeness, default=None)


def _canary(spec: Any) -> str:
    return str(((spec.get("target") or {}).get("canary") or {}).get("subset") or "")


def _in_step(store: SqlStore, ids: list[str]) -> dict[str, float]:
    """Seconds from the first tick of the current (phase, step) to the last tick."""
    if not ids:
        return {}
    query = (select(ticks.c.rollout_id, ticks.c.phase, ticks.c.step, ticks.c.at).where(ticks.c.rollout_id.in_(ids))
             .order_by(ticks.c.rollout_id, ticks.c.tick, ticks.c.id))
    start: dict[str, tuple[tuple[str, int], Any, Any]] = {}
    with store.engine.connect() as conn:
        for r in conn.execute(query):
            key = (r.phase, r.step)
            seen = start.get(r.rollout_id)
            start[r.rollout_id] = (key, r.at if seen is None or seen[0] != key else seen[1], r.at)
    return {i: (last - first).total_seconds() for i, (_, first, last) in start.items()}


QUIET = ("hold", "continue", "finish")  # decisions that only keep or close what an earlier one chose


def _decisive(store: SqlStore, ids: list[str]) -> dict[str, tuple[str, str]]:
    if not ids:
        return {}
    last = (select(func.max(ticks.c.id).label("id")).where(ticks.c.rollout_id.in_(ids),
                                                            ticks.c.decision.not_in(QUIET))
            .group_by(ticks.c.rollout_id).subquery())
    query = select(ticks.c.rollout_id, ticks.c.decision, ticks.c.reason).join(last, last.c.id == ticks.c.id)
    with store.engine.connect() as conn:
        return {r.rollout_id: (r.decision, r.reason) for r in conn.execute(query)}


def _row(s: RolloutStatus, in_step: dict[str, float], decisive: dict[str, tuple[str, str]]) -> Row:
    subset = _canary(s.spec)
    decision, reason = decisive.get(s.summary.id, (s.decision or "", s.reason))
    return Row(s, subset, s.weights.get(subset) if s.weights else None, leading(s.final_verdicts),
               in_step.get(s.summary.id), decision, reason)


def rows(store: SqlStore, *, phase: str | None = None, namespace: str | None = None, limit: int = 200) -> list[Row]:
    """Active rollouts first (newest first), then finished ones (newest first)."""
    found = statuses(store, phase=phase, namespace=namespace, limit=limit)
    active = [s.summary.id for s in found if Phase(s.summary.phase) not in control.FINAL_PHASES]
    in_step, decisive = _in_step(store, active), _decisive(store, [s.summary.id for s in found])
    out = [_row(s, in_step, decisive) for s in found]
    return sorted(out, key=lambda r: r.finished)  # stable: keeps newest first within each group


def namespaces(store: SqlStore) -> list[str]:
    with store.engine.connect() as conn:
        return sorted(conn.execute(select(rollouts.c.namespace).distinct()).scalars())


def fingerprint(store: SqlStore, rollout_id: str | None = None) -> tuple[Any, ...]:
    """Changes whenever something a page shows may have changed: a tick, an event, a rollout, a command."""
    t = select(func.max(ticks.c.id))
    e = select(func.max(events.c.id))
    c = select(func.count()).select_from(commands).where(commands.c.tick.is_not(None))
    r = select(func.count()).select_from(rollouts)
    if rollout_id is not None:
        t, e = t.where(ticks.c.rollout_id == rollout_id), e.where(events.c.rollout_id == rollout_id)
        c, r = c.where(commands.c.rollout_id == rollout_id), r.where(rollouts.c.id == rollout_id)
    with store.engine.connect() as conn:
        return tuple(conn.execute(q).scalar() for q in (t, e, c, r))


@dataclass(frozen=True)
class CommandState:
    id: int
    command: str
    tick: int | None  # None: waiting for the leader; control.IGNORED: the rollout had finished
    phase: str | None  # the phase after the tick that applied it
    reason: str | None


def command_state(store: SqlStore, rollout_id: str, command_id: int) -> CommandState | None:
    with store.engine.connect() as conn:
        cmd = conn.execute(select(commands.c.id, commands.c.command, commands.c.tick)
                           .where(commands.c.id == command_id, commands.c.rollout_id == rollout_id)).first()
        if cmd is None:
            return None
        applied = None
        if cmd.tick is not None and cmd.tick != control.IGNORED:
            applied = conn.execute(select(ticks.c.phase, ticks.c.reason)
                                   .where(ticks.c.rollout_id == rollout_id, ticks.c.tick == cmd.tick)
                                   .order_by(ticks.c.id.desc()).limit(1)).first()
    if applied is None:  # claimed for a tick not recorded yet: still on its way
        return CommandState(cmd.id, cmd.command, cmd.tick if cmd.tick == control.IGNORED else None, None, None)
    return CommandState(cmd.id, cmd.command, cmd.tick, applied.phase, applied.reason)


def row(store: SqlStore, rollout_id: str) -> Row | None:
    found = statuses(store, ids=[rollout_id], limit=1)
    if not found:
        return None
    s = found[0]
    in_step = _in_step(store, [rollout_id]) if Phase(s.summary.phase) not in control.FINAL_PHASES else {}
    return _row(s, in_step, _decisive(store, [rollout_id]))
