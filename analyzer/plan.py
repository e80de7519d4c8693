"""Power planning (statistics.md §7.4): what a config can detect at a given traffic, and how long it needs.

The expected exposure follows the spec's schedule (header phase, then each partial step for its minimum
dwell, then the last partial step until the budget). Detection time is the first minute at which the
rollback e-process would have crossed its threshold with the asked power, by the same Monte Carlo the
judge uses for "enough information".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import norm

from analyzer.config import ErrorRateMetric, LatencyMetric, RolloutSpec
from analyzer.stats.rate_ratio import detection_power

PLAN_POWER = 0.8
RATIOS = (1.2, 1.5, 2.0, 3.0, 5.0)
SLOWDOWNS = (1.1, 1.2, 1.5)
ASSUMED_SIGMA = 0.5  # log-sd used to turn a p99 into exceedance rates at the gate edges


@dataclass(frozen=True)
class Detection:
    metric: str
    effect: str  # e.g. "2x error rate", "1.2x slower"
    ratio: float  # rate ratio at the metric (edge)
    minutes: float | None  # to reach PLAN_POWER; None when not within the horizon
    fits_budget: bool


@dataclass(frozen=True)
class PlanReport:
    rollout: str
    rps: float
    budget_minutes: float
    detections: list[Detection]
    notes: list[str]

    def to_json(self) -> dict[str, Any]:
        return {
            "rollout": self.rollout, "rps": self.rps, "budget_minutes": self.budget_minutes, "power": PLAN_POWER,
            "detections": [d.__dict__ for d in self.detections], "notes": self.notes,
        }


def expected_exposure(spec: RolloutSpec, rps: float, minutes: int, header_share: float = 0.05) -> np.ndarray:
    """Expected (canary, baseline) requests per interval along the spec's schedule."""
    interval = spec.timing.interval
    per = rps * interval
    shares: list[float] = []
    hp = spec.strategy.header_phase
    if hp is not None:
        n = max(spec.timing.min_dwell, math.ceil(hp.min_duration / interval))
        shares += [header_share] * (n if spec.strategy.type == "canary" else 10**6)
    partial = spec.strategy.weights[:-1]
    for w in partial[:-1]:
        shares += [w / 100] * spec.timing.min_dwell
    if partial:
        shares += [partial[-1] / 100] * 10**6
    k = max(1, int(minutes * 60 / interval))
    s = np.asarray(shares[:k])
    return np.stack([per * s, per * (1 - s)], axis=1)


def _minutes_to_detect(
    spec: RolloutSpec, exposure: np.ndarray, rate: float, ratio: float, alpha: float
) -> float | None:
    interval_min = spec.timing.interval / 60
    lo, hi = 1, exposure.shape[0]
    if rate <= 0 or detection_power(exposure, rate, ratio, alpha, replicates=300) < PLAN_POWER:
        return None
    while lo < hi:  # first number of intervals reaching the power
        mid = (lo + hi) // 2
        if detection_power(exposure[:mid], rate, ratio, alpha, replicates=300) >= PLAN_POWER:
            hi = mid
        else:
            lo = mid + 1
    return round(lo * interval_min, 1)


def make_plan(spec: RolloutSpec, *, rps: float, baseline_error_rate: float, latency_p99_ms: float) -> PlanReport:
    budget_min = spec.timing.budget / 60
    horizon = int(4 * budget_min)
    exposure = expected_exposure(spec, rps, horizon)
    detections: list[Detection] = []
    notes: list[str] = []
    median = latency_p99_ms / math.exp(norm.ppf(0.99) * ASSUMED_SIGMA)
    for metric in spec.analysis.metrics:
        if not metric.gate:
            continue
        if isinstance(metric, ErrorRateMetric):
            alpha = spec.analysis.alpha_for(metric.name)
            for ratio in sorted({*RATIOS, metric.mde}):
                m = _minutes_to_detect(spec, exposure, baseline_error_rate, ratio, alpha)
                detections.append(Detection(metric.name, f"{ratio:g}x error rate", ratio, m,
                                            m is not None and m <= budget_min))
            if baseline_error_rate == 0:
                notes.append("with no baseline errors a ratio is undefined; the canary is judged by its own rate "
                             f"(negligibleRate {metric.negligible_rate})")
        elif isinstance(metric, LatencyMetric):
            alpha = spec.analysis.alpha_for(metric.name)
            for slow in SLOWDOWNS:
                best: Detection | None = None
                for edge in metric.gate_edges:
                    base = float(norm.sf((math.log(edge) - math.log(median)) / ASSUMED_SIGMA))
                    canary = float(norm.sf((math.log(edge) - math.log(median * slow)) / ASSUMED_SIGMA))
                    ratio = canary / base if base > 0 else math.inf
                    m = _minutes_to_detect(spec, exposure, base, ratio, alpha) if math.isfinite(ratio) else None
                    d = Detection(f"{metric.name}>{edge:g}ms", f"{slow:g}x slower", round(ratio, 2), m,
                                  m is not None and m <= budget_min)
                    if best is None or (m is not None and (best.minutes is None or m < best.minutes)):
                        best = d
                if best is not None:
                    detections.append(best)
            notes.append(f"latency assumes lognormal durations (log-sd {ASSUMED_SIGMA}) with p99 {latency_p99_ms:g} ms")
    return PlanReport(spec.name, rps, budget_min, detections, notes)
