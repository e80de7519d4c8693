"""Run whole rollouts in virtual time on the simulated mesh: the demo, `simulate`, tests and benchmarks."""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from analyzer.app import wiring
from analyzer.config import RolloutSpec
from analyzer.engine import Engine, TickOutcome, decision_minute
from analyzer.model import OUTCOME_BY_PHASE, Command, MetricVerdict
from analyzer.ports import Store
from analyzer.sim.scenario import Scenario


@dataclass(frozen=True)
class RunResult:
    rollout_id: str
    outcome: str
    decision_minute: float | None
    final_weights: dict[str, int]
    steps_reached: list[int]
    reason: str
    metrics: list[MetricVerdict]
    ticks: int
    canary_requests: int
    excess_bad_requests: float  # canary errors beyond the baseline rate, up to the decision (user harm)
    extras: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "rollout": self.rollout_id,
            "outcome": self.outcome,
            "decision_minute": None if self.decision_minute is None else round(self.decision_minute, 2),
            "final_weights": self.final_weights,
            "steps_reached": self.steps_reached,
            "reason": self.reason,
            "metrics": [verdict_json(v) for v in self.metrics],
            "ticks": self.ticks,
            "canary_requests": self.canary_requests,
            **self.extras,
        }


def _finite(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else round(x, 4)


def verdict_json(v: MetricVerdict) -> dict[str, Any]:
    return {
        "name": v.metric,
        "verdict": v.verdict.value,
        "gate": v.gate,
        "evidence": _finite(v.e_value),
        "threshold": _finite(v.threshold),
        "promotion_evidence": _finite(v.promotion_e_value),
        "ratio": _finite(v.ratio),
        "ci": [round(v.ci[0], 4), round(v.ci[1], 4)] if v.ci else None,
        "reason": v.reason,
        "details": json.loads(json.dumps(v.details, default=str).replace("NaN", "null").replace("Infinity", "null")),
    }


def run_rollout(
    spec: RolloutSpec,
    scenario: Scenario,
    *,
    seed: int = 0,
    store: Store | None = None,
    rollout_id: str | None = None,
    on_tick: Callable[[Engine, TickOutcome], None] | None = None,
    spec_text: str = "",
    cluster: wiring.ClusterAdapters | None = None,
    commands: dict[int, Command] | None = None,
    label: str | None = None,
) -> RunResult:
    """One rollout in virtual time. The loop is closed: the mesh routes by the router the engine drives.

    By default the routes, replicas and notifications stay in memory; with a cluster's adapters the rollout
    drives a real VirtualService (Deployments, Events) while the metrics stay simulated. `commands` gives
    operator commands by tick number (e.g. {12: Command.ABORT}). `label` is a readable name kept with the
    rollout in the store (the id is unique, the label need not be).
    """
    rig = wiring.simulated(spec, scenario, seed=seed, store=store, cluster=cluster)
    clock, router, mesh, store = rig.clock, rig.router, rig.mesh, rig.adapters.store
    rollout_id = rollout_id or f"{spec.name}-{scenario.name}-{seed}"
    meta: dict[str, Any] = {"mode": "simulated", "scenario": scenario.name, "seed": seed}
    if label is not None:
        meta["label"] = label
    store.create_rollout(rollout_id, spec, spec_text, meta)
    engine = Engine(spec, rollout_id, rig.adapters, seed=seed)
    steps: list[int] = []
    outcome = engine.start()
    max_ticks = int(spec.timing.budget / spec.timing.interval) + 10
    for _ in range(max_ticks):
        if engine.done:
            break
        clock.advance(spec.timing.interval)
        outcome = engine.tick((commands or {}).get(engine.state.tick + 1))
        w = router.get_weights(spec)[spec.target.canary.subset]
        if w and (not steps or steps[-1] != w):
            steps.append(w)
        if on_tick:
            on_tick(engine, outcome)
    wiring.close(rig.adapters)
    extras: dict[str, Any] = {}
    if rig.adapters.load is not None:
        ls = rig.adapters.load.stats()
        extras["load"] = {"target_rps": ls.target_rps, "requests": ls.completed,
                          "achieved_rps": round(ls.achieved_rps, 2)}
    state = engine.state
    decided = decision_minute(state)
    harm = 0.0
    n_canary = 0
    for iv in mesh.history:
        if state.decided_at is not None and iv.start >= state.decided_at:
            break
        n_canary += iv.canary.requests
        harm += iv.canary.requests * max(0.0, iv.canary_error_rate - iv.baseline_error_rate)
    metrics = list(engine.last_verdicts)
    report = engine.trace_report()
    if report is not None:
        metrics += report.verdicts()
        extras["traces"] = report.summary()
    return RunResult(
        rollout_id=rollout_id,
        outcome=OUTCOME_BY_PHASE.get(state.phase, state.phase.value.lower()),
        decision_minute=decided if decided is not None else (
            None if state.phase not in OUTCOME_BY_PHASE else state.tick * spec.timing.interval / 60),
        final_weights=router.get_weights(spec),
        steps_reached=steps,
        reason=state.reason,
        metrics=metrics,
        ticks=state.tick,
        canary_requests=n_canary,
        excess_bad_requests=harm,
        extras=extras,
    )


@dataclass(frozen=True)
class BatchSummary:
    runs: int
    outcomes: dict[str, int]
    decision_minutes: dict[str, float | None]
    by_outcome_minutes: dict[str, dict[str, float | None]]

    def to_json(self) -> dict[str, Any]:
        return {"runs": self.runs, "outcomes": self.outcomes, "decision_minutes": self.decision_minutes,
                "decision_minutes_by_outcome": self.by_outcome_minutes}


def _quantiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p10": None, "p50": None, "p90": None, "mean": None}
    arr = np.asarray(values)
    return {"p10": round(float(np.quantile(arr, 0.1)), 2), "p50": round(float(np.quantile(arr, 0.5)), 2),
            "p90": round(float(np.quantile(arr, 0.9)), 2), "mean": round(float(arr.mean()), 2)}


def run_many(spec: RolloutSpec, scenario: Scenario, *, runs: int, seed: int = 0,
             progress: Callable[[int], None] | None = None) -> BatchSummary:
    outcomes: Counter[str] = Counter({name: 0 for name in OUTCOME_BY_PHASE.values()})
    minutes: list[float] = []
    by: dict[str, list[float]] = {}
    for i in range(runs):
        r = run_rollout(spec, scenario, seed=seed + i)
        outcomes[r.outcome] += 1
        if r.decision_minute is not None:
            minutes.append(r.decision_minute)
            by.setdefault(r.outcome, []).append(r.decision_minute)
        if progress:
            progress(i + 1)
    return BatchSummary(runs, dict(outcomes), _quantiles(minutes), {k: _quantiles(v) for k, v in by.items()})


