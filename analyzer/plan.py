"""Power planning (statistics.md §7.4): what a config can detect at a given traffic, and how long it needs.

The expected exposure follows the spec's schedule (header phase, then each partial step for its minimum
dwell, then the last partial step until the budget). Detection time is the first minute by which the
rollback e-process has crossed its threshold in PLAN_POWER of simulated binomial rollouts, through the
judge's own tempered update (so it includes the cost of the noise bound). Promotion time is the median
minute at which a healthy canary's non-inferiority evidence reaches its share of promotionAlpha; when that
does not fit the budget, the plan says so and how much more traffic would (issue 9 §4: inconclusive ends
rise at low traffic, and load is the answer).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.stats import norm

from analyzer.config import ErrorRateMetric, LatencyMetric, RolloutSpec
from analyzer.judge import promotion_rules
from analyzer.stats.rate_ratio import FirstPassage, first_passage

PLAN_POWER = 0.8
REPLICATES = 100
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
class Promotion:
    """When a healthy canary (ratio 1) shows non-inferiority for one metric (or edge)."""

    metric: str
    minutes: float | None  # median; None when not within twice the budget
    fits_budget: bool


@dataclass(frozen=True)
class PlanReport:
    rollout: str
    rps: float
    budget_minutes: float
    detections: list[Detection]
    notes: list[str]
    load: LoadAdvice | None = None
    promotions: list[Promotion] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "rollout": self.rollout, "rps": self.rps, "budget_minutes": self.budget_minutes, "power": PLAN_POWER,
            "detections": [d.__dict__ for d in self.detections], "notes": self.notes,
            "load": None if self.load is None else self.load.to_json(),
            "promotions": [p.__dict__ for p in self.promotions],
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


def _quantile_minutes(ticks: np.ndarray, share: float, offset: float, interval_min: float) -> float | None:
    """The first minute by which `share` of the replicates had crossed (ticks are 1-based, 0 = never)."""
    hits = np.sort(ticks[ticks > 0])
    need = max(1, math.ceil(share * ticks.size))
    if hits.size < need:
        return None
    return round(offset + hits[need - 1] * interval_min, 1)


def _gate_exposure(spec: RolloutSpec, exposure: np.ndarray) -> tuple[np.ndarray, float]:
    """The intervals whose evidence the weighted steps judge, and the minutes before them.

    In a canary strategy the header phase is judged on its own and the steps start with fresh evidence.
    """
    hp = spec.strategy.header_phase
    if hp is None or spec.strategy.type != "canary":
        return exposure, 0.0
    n = max(spec.timing.min_dwell, math.ceil(hp.min_duration / spec.timing.interval))
    return exposure[n:], n * spec.timing.interval / 60


def _promotion_floor(spec: RolloutSpec) -> float:
    """Minutes before promotion is possible at all: the steps before the last, and its minimum dwell."""
    steps = len(spec.strategy.weights) - 1
    return steps * spec.timing.min_dwell * spec.timing.interval / 60


def _metric_plan(
    spec: RolloutSpec, metric: ErrorRateMetric | LatencyMetric, label: str, exposure: np.ndarray, offset: float,
    rate: float, ratios: list[tuple[str, float]],
) -> tuple[list[Detection], Promotion | None]:
    interval_min = spec.timing.interval / 60
    budget_min = spec.timing.budget / 60
    alpha = spec.analysis.alpha_for(metric.name)
    if spec.strategy.header_phase is not None and spec.strategy.type == "canary":
        alpha *= 1 - spec.strategy.header_phase.alpha_share
    prom_alpha = spec.analysis.promotion_alpha / promotion_rules(spec, metric)

    def passage(ratio: float, exp: np.ndarray, replicates: int = REPLICATES) -> FirstPassage:
        return first_passage(exp, rate, ratio, alpha=alpha, promotion_alpha=prom_alpha, tolerance=metric.tolerance,
                             mde=metric.mde, noise=metric.interval_noise, replicates=replicates)

    detections = []
    for effect, ratio in ratios:
        m = _quantile_minutes(passage(ratio, exposure).rollback, PLAN_POWER, offset, interval_min) \
            if rate > 0 and math.isfinite(ratio) else None
        detections.append(Detection(label, effect, round(ratio, 2), m, m is not None and m <= budget_min))
    if rate <= 0:
        return detections, None
    floor = _promotion_floor(spec)
    budget_ticks = max(1, round((budget_min - offset) / interval_min))

    def promote_minutes(exp: np.ndarray, replicates: int = REPLICATES) -> float | None:
        m = _quantile_minutes(passage(1.0, exp[:budget_ticks * 2], replicates).promotion, 0.5, offset, interval_min)
        return None if m is None else max(m, offset + floor)

    m = promote_minutes(exposure)
    return detections, Promotion(label, m, m is not None and m <= budget_min)


MAX_LOAD_FACTOR = 1000.0  # search for load up to this many times the service's own traffic
LoadCase = tuple[ErrorRateMetric | LatencyMetric, str, float]  # (metric, label, event rate at the baseline)


def load_to_decide(spec: RolloutSpec, *, rps: float, cases: list[LoadCase]) -> LoadAdvice:
    """The smallest synthetic load (rps) with which, within the budget and through the same tempered gate as the
    judge, a healthy canary promotes and an `mde` regression is caught, each with probability `analysis.power`."""
    power = spec.analysis.power
    # Promotion needs every gate metric at once: each gets the power's root (as if independent).
    each = power ** (1 / max(1, len(cases)))
    budget_min = spec.timing.budget / 60
    interval_min = spec.timing.interval / 60

    def shortfall(extra: float) -> str | None:
        exposure, offset = _gate_exposure(spec, expected_exposure(spec, rps + extra, int(budget_min) + 1))
        ticks = max(1, round((budget_min - offset) / interval_min))
        exposure = exposure[:ticks]
        first_promotion = max(1, round(_promotion_floor(spec) / interval_min))
        for metric, label, rate in cases:
            alpha = spec.analysis.alpha_for(metric.name)
            if spec.strategy.header_phase is not None and spec.strategy.type == "canary":
                alpha *= 1 - spec.strategy.header_phase.alpha_share
            prom_alpha = spec.analysis.promotion_alpha / promotion_rules(spec, metric)

            def passage(ratio: float, alpha: float = alpha, prom_alpha: float = prom_alpha,
                        metric: ErrorRateMetric | LatencyMetric = metric, rate: float = rate) -> FirstPassage:
                return first_passage(exposure, rate, ratio, alpha=alpha, promotion_alpha=prom_alpha,
                                     tolerance=metric.tolerance, mde=metric.mde, noise=metric.interval_noise,
                                     replicates=REPLICATES)

            if float((passage(metric.mde).rollback > 0).mean()) < power:
                return f"{label}: catch a {metric.mde:g}x regression"
            healthy = passage(1.0)
            promoted = (healthy.promotion > 0) & (healthy.rollback == 0)
            if float(promoted.mean()) < each or ticks < first_promotion:
                return f"{label}: show a healthy canary below {metric.tolerance:g}x"
        return None

    binding = shortfall(0.0)
    if binding is None:
        return LoadAdvice(0.0, power, "none: the service's own traffic suffices")
    hi = max(rps, 1.0)
    while shortfall(hi) is not None:
        hi *= 2
        if hi > MAX_LOAD_FACTOR * max(rps, 1.0):
            return LoadAdvice(None, power, binding)
    lo = hi / 2 if hi > max(rps, 1.0) else 0.0
    while hi - lo > max(0.5, 0.05 * hi):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if shortfall(mid) is None else (mid, hi)
    return LoadAdvice(float(math.ceil(hi)), power, binding)


def make_plan(spec: RolloutSpec, *, rps: float, baseline_error_rate: float, latency_p99_ms: float) -> PlanReport:
    budget_min = spec.timing.budget / 60
    horizon = int(4 * budget_min)
    exposure, offset = _gate_exposure(spec, expected_exposure(spec, rps, horizon))
    detections: list[Detection] = []
    promotions: list[Promotion] = []
    notes: list[str] = []
    cases: list[LoadCase] = []  # what the load advice must make decidable
    median = latency_p99_ms / math.exp(norm.ppf(0.99) * ASSUMED_SIGMA)
    for metric in spec.analysis.metrics:
        if not metric.gate:
            continue
        if isinstance(metric, ErrorRateMetric):
            if baseline_error_rate > 0:
                cases.append((metric, metric.name, baseline_error_rate))
            ratios = [(f"{r:g}x error rate", r) for r in sorted({*RATIOS, metric.mde})]
            found, prom = _metric_plan(spec, metric, metric.name, exposure, offset, baseline_error_rate, ratios)
            detections += found
            promotions += [prom] if prom else []
            if baseline_error_rate == 0:
                notes.append("with no baseline errors a ratio is undefined: no rollback on ratio evidence and no "
                             "promotion on non-inferiority; only an opt-in negligibleRate can promote "
                             f"(now {metric.negligible_rate})")
        elif isinstance(metric, LatencyMetric):
            for edge in metric.gate_edges:
                base = float(norm.sf((math.log(edge) - math.log(median)) / ASSUMED_SIGMA))
                ratios = []
                for slow in SLOWDOWNS:
                    canary = float(norm.sf((math.log(edge) - math.log(median * slow)) / ASSUMED_SIGMA))
                    ratios.append((f"{slow:g}x slower", canary / base if base > 0 else math.inf))
                found, prom = _metric_plan(spec, metric, f"{metric.name}>{edge:g}ms", exposure, offset, base, ratios)
                detections += found
                promotions += [prom] if prom else []
            slo_edge = max(metric.gate_edges)
            slow_share = float(norm.sf((math.log(slo_edge) - math.log(median)) / ASSUMED_SIGMA))
            if slow_share > 0:
                cases.append((metric, f"{metric.name}>{slo_edge:g}ms", slow_share))
            notes.append(f"latency assumes lognormal durations (log-sd {ASSUMED_SIGMA}) with p99 {latency_p99_ms:g} ms")
    notes.append("figures assume binomial telemetry; with noise between intervals (pods varying minute to minute) "
                 "the gate's noise bound stays wider and decisions take longer (docs/statistics-validity.md)")
    load = load_to_decide(spec, rps=rps, cases=cases) if cases else None
    return PlanReport(spec.name, rps, budget_min, _best_edges(detections), notes, load, promotions)


def _best_edges(detections: list[Detection]) -> list[Detection]:
    """Latency: per slowdown, the edge that detects it first (the gate averages its edges)."""
    out: list[Detection] = []
    best: dict[tuple[str, str], Detection] = {}
    for d in detections:
        if ">" not in d.metric:
            out.append(d)
            continue
        key = (d.metric.split(">")[0], d.effect)
        cur = best.get(key)
        if cur is None or (d.minutes is not None and (cur.minutes is None or d.minutes < cur.minutes)):
            best[key] = d
    return out + list(best.values())
