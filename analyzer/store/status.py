"""A rollout's current status from the store: its summary, its last tick and the verdicts of its last judged tick.

The API serves these (every replica reads the store, so followers answer too). Cheaper than
`history.rollout_detail`, which loads the whole timeline.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from analyzer.model import MetricVerdict
from analyzer.store import codec
from analyzer.store.history import RolloutSummary, _summaries_query, _summary
from analyzer.store.schema import rollouts, ticks, verdicts
from analyzer.store.sql import RolloutNotFound, SqlStore
from analyzer.traces import FINDING_PREFIX


@dataclass(frozen=True)
class RolloutStatus:
    summary: RolloutSummary
    tick: int | None  # the last tick's number; None before the first
    step: int
    weights: Mapping[str, int]
    header_route: bool
    decision: str | None
    reason: str
    updated_at: datetime | None  # wall clock of the last recorded tick
    final_verdicts: tuple[MetricVerdict, ...]
    final_verdicts_tick: int | None
    spec: Mapping[str, Any]


def _last_ticks(ids: list[str]) -> Any:
    latest = (select(func.max(ticks.c.id).label("id")).where(ticks.c.rollout_id.in_(ids))
              .group_by(ticks.c.rollout_id).subquery())
    return select(ticks.c.id, ticks.c.rollout_id, ticks.c.tick, ticks.c.step, ticks.c.weights, ticks.c.header_route,
                  ticks.c.decision, ticks.c.reason, ticks.c.recorded_at).join(latest, latest.c.id == ticks.c.id)


def _last_judged(ids: list[str]) -> Any:
    # As `history.rollout_detail`: the gate's verdicts of the last judged tick; trace findings are kept apart.
    gate = ~verdicts.c.metric.startswith(FINDING_PREFIX, autoescape=True)
    judged = (select(func.max(verdicts.c.tick_id).label("id")).join(ticks, ticks.c.id == verdicts.c.tick_id)
              .where(ticks.c.rollout_id.in_(ids), gate).group_by(ticks.c.rollout_id).subquery())
    return (select(ticks.c.rollout_id, ticks.c.tick, verdicts.c.data)
            .join(judged, judged.c.id == ticks.c.id).join(verdicts, verdicts.c.tick_id == ticks.c.id)
            .where(gate).order_by(verdicts.c.id))


def statuses(store: SqlStore, *, ids: list[str] | None = None, phase: str | None = None, name: str | None = None,
             namespace: str | None = None, limit: int = 100) -> list[RolloutStatus]:
    """Newest first."""
    query = _summaries_query().add_columns(rollouts.c.spec)
    if ids is not None:
        query = query.where(rollouts.c.id.in_(ids))
    if phase is not None:
        query = query.where(rollouts.c.phase == phase)
    if name is not None:
        query = query.where(rollouts.c.name == name)
    if namespace is not None:
        query = query.where(rollouts.c.namespace == namespace)
    query = query.order_by(rollouts.c.created_at.desc(), rollouts.c.id.desc()).limit(limit)
    with store.engine.connect() as conn:
        rows = conn.execute(query).all()
        found = [r.id for r in rows]
        last = {t.rollout_id: t for t in conn.execute(_last_ticks(found))} if found else {}
        judged: dict[str, tuple[int, list[MetricVerdict]]] = {}
        for v in conn.execute(_last_judged(found)) if found else ():
            judged.setdefault(v.rollout_id, (v.tick, []))[1].append(codec.decode_verdict(v.data))
    out = []
    for row in rows:
        t = last.get(row.id)
        tick_no, vs = judged.get(row.id, (None, []))
        out.append(RolloutStatus(
            summary=_summary(row), tick=None if t is None else t.tick, step=-1 if t is None else t.step,
            weights={} if t is None else dict(t.weights), header_route=False if t is None else t.header_route,
            decision=None if t is None else t.decision, reason="" if t is None else t.reason,
            updated_at=None if t is None else t.recorded_at, final_verdicts=tuple(vs), final_verdicts_tick=tick_no,
            spec=row.spec,
        ))
    return out


def status(store: SqlStore, rollout_id: str) -> RolloutStatus:
    found = statuses(store, ids=[rollout_id], limit=1)
    if not found:
        raise RolloutNotFound(rollout_id)
    return found[0]
