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
from analyzer.stats.rate_ratio import detection_power, ratio_grid

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
class LoadAdvice:
    """The synthetic load that lets the spec decide within its budget (statistics.md §7.4, inverted)."""

    add_rps: float | None  # 0: the traffic suffices; None: not even MAX_LOAD_FACTOR times the traffic
    power: float  # the probability asked for, per gate metric
    binding: str  # the metric and criterion that needs the most load

    def to_json(self) -> dict[str, Any]:
        return {"add_rps": self.add_rps, "power": self.power, "binding": self.binding}


@dataclass(frozen=True)
class PlanReport:
    rollout: str
    rps: float
    budget_minutes: float
    detections: list[Detection]
    notes: list[str]
    load: LoadAdvice | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "rollout": self.rollout, "rps": self.rps, "budget_minutes": self.budget_minutes, "power": PLAN_POWER,
            "detections": [d.__dict__ for d in self.detections], "notes": self.notes,
            "load": None if self.load is None else self.load.to_json(),
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


def promotion_power(exposure: np.ndarray, rate: float, tolerance: float, alpha: float, *, replicates: int = 300,
                    seed: int = 0) -> float:
    """P(a canary as good as the baseline shows non-inferiority below `tolerance` by the end of `exposure`).

    Monte Carlo like `detection_power`: Poisson events at the same rate in both subsets, intervals pooled by
    canary share; only the evidence at the end is checked (the promotion rule needs its dwell first).
    """
    exp = np.asarray(exposure, dtype=float).reshape(-1, 2)
    if exp.size == 0 or rate <= 0:
        return 0.0
    rng = np.random.default_rng(seed)
    share = np.round(exp[:, 0] / np.maximum(exp.sum(axis=1), 1.0), 2)
    _, group = np.unique(share, return_inverse=True)
    n_c, n_b = np.bincount(group, weights=exp[:, 0]), np.bincount(group, weights=exp[:, 1])
    e_c = rng.poisson(n_c * rate, size=(replicates, n_c.size))
    e_b = rng.poisson(n_b * rate, size=(replicates, n_b.size))
    grid = ratio_grid(tolerance)
    thetas = np.concatenate([grid.thetas[grid.promote], [tolerance]])
    rho = n_c / np.maximum(n_c + n_b, 1.0)
    pen = (e_c + e_b).astype(float) @ np.log1p(rho[:, None] * (thetas - 1.0))  # [R, G+1]
    ll = e_c.sum(axis=1)[:, None] * np.log(thetas) - pen
    alt = ll[:, :-1]
    top = alt.max(axis=1)
    log_mix = top + np.log(np.exp(alt - top[:, None]).sum(axis=1)) - np.log(alt.shape[1])
    return float((log_mix - ll[:, -1] >= math.log(1.0 / alpha)).mean())


MAX_LOAD_FACTOR = 1000.0  # search for load up to this many times the service's own traffic


def load_to_decide(spec: RolloutSpec, *, rps: float, rates: list[tuple[str, float, float, float]]) -> LoadAdvice:
    """The smallest synthetic load (rps) with which, within the budget, a healthy canary promotes and an `mde`
    regression is caught, each with probability `analysis.power`, for every (metric, rate, mde, alpha) given."""
    power = spec.analysis.power
    k = max(1, int(spec.timing.budget / spec.timing.interval))
    tolerance = {m.name: m.tolerance for m in spec.analysis.metrics if isinstance(m, ErrorRateMetric | LatencyMetric)}

    def shortfall(extra: float) -> str | None:
        exposure = expected_exposure(spec, rps + extra, int(spec.timing.budget / 60) + 1)[:k]
        for name, rate, mde, alpha in rates:
            if detection_power(exposure, rate, mde, alpha, replicates=300) < power:
                return f"{name}: catch a {mde:g}x regression"
            tol = tolerance.get(name.split(">")[0], 1.5)
            if promotion_power(exposure, rate, tol, spec.analysis.promotion_alpha) < power:
                return f"{name}: show a healthy canary below {tol:g}x"
        return None

    binding = shortfall(0.0)
    if binding is None:
        return LoadAdvice(0.0, power, "none: the service's own traffic suffices")
    hi = rps
    while shortfall(hi) is not None:
        hi *= 2
        if hi > MAX_LOAD_FACTOR * rps:
            return LoadAdvice(None, power, binding)
    lo = hi / 2 if hi > rps else 0.0
    while hi - lo > max(0.5, 0.05 * hi):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if shortfall(mid) is None else (mid, hi)
    return LoadAdvice(float(math.ceil(hi)), power, binding)


def make_plan(spec: RolloutSpec, *, rps: float, baseline_error_rate: float, latency_p99_ms: float) -> PlanReport:
    budget_min = spec.timing.budget / 60
    horizon = int(4 * budget_min)
    exposure = expected_exposure(spec, rps, horizon)
    detections: list[Detection] = []
    notes: list[str] = []
    rates: list[tuple[str, float, float, float]] = []  # (metric, event rate, mde, alpha) for the load advice
    median = latency_p99_ms / math.exp(norm.ppf(0.99) * ASSUMED_SIGMA)
    for metric in spec.analysis.metrics:
        if not metric.gate:
            continue
        if isinstance(metric, ErrorRateMetric):
            alpha = spec.analysis.alpha_for(metric.name)
            if baseline_error_rate > 0:
                rates.append((metric.name, baseline_error_rate, metric.mde, alpha))
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
            slo_edge = max(metric.gate_edges)
            slow_share = float(norm.sf((math.log(slo_edge) - math.log(median)) / ASSUMED_SIGMA))
            if slow_share > 0:
                rates.append((f"{metric.name}>{slo_edge:g}ms", slow_share, metric.mde, alpha))
            notes.append(f"latency assumes lognormal durations (log-sd {ASSUMED_SIGMA}) with p99 {latency_p99_ms:g} ms")
    load = load_to_decide(spec, rps=rps, rates=rates) if rates else None
    return PlanReport(spec.name, rps, budget_min, detections, notes, load)
