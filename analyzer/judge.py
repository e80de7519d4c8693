"""Judge: spec + evidence + one interval's observation -> updated evidence and a verdict per metric. No I/O.

The evidence is a typed value (`analyzer.evidence.Evidence`) that the store encodes, so a rollout can be
persisted, resumed and replayed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

import numpy as np

from analyzer import kayenta_gate
from analyzer.config import CustomMetric, ErrorRateMetric, LatencyMetric, RolloutSpec, TraceMetric
from analyzer.evidence import CustomEvidence, EdgeEvidence, Evidence, MetricEvidence
from analyzer.model import MetricVerdict, Observation, SubsetCounts, Verdict
from analyzer.stats import dispersion
from analyzer.stats.histogram import quantile_intervals
from analyzer.stats.rate_ratio import RatioEvidence, RatioSummary, detection_power, negligible_log_e
from analyzer.stats.srm import SrmEvidence

SRM_KEY = "traffic-split"
OUTAGE_KEY = "shared-outage"
MIN_REQUESTS_FOR_OUTAGE = 20


@dataclass(frozen=True)
class JudgeContext:
    """What the judge needs to know about the tick besides the data."""

    expected_share: float | None = None  # configured canary share (weights); None skips the SRM check
    warmup: bool = False  # the canary is warming up: its data is excluded from evidence
    assess_promotion: bool = False  # at the last partial step: compute the promotion evidence
    unavailable: str | None = None  # the metric source could not be asked
    seed: int = 0  # for the power Monte Carlo, so replays are deterministic
    alpha_share: float = 1.0  # this phase's share of the rollback budget (the header phase has its own)


def initial_evidence(spec: RolloutSpec) -> Evidence:
    metrics: dict[str, MetricEvidence] = {}
    for m in spec.analysis.metrics:
        if isinstance(m, ErrorRateMetric):
            metrics[m.name] = RatioEvidence(m.tolerance, mde=m.mde, noise=m.interval_noise)
        elif isinstance(m, LatencyMetric | TraceMetric):
            metrics[m.name] = EdgeEvidence({_edge_key(e): RatioEvidence(m.tolerance, mde=m.mde, noise=m.interval_noise)
                                            for e in m.gate_edges})
        else:
            metrics[m.name] = CustomEvidence()
    kayenta = _kayenta_series(kayenta_gate.initial(spec.analysis.kayenta)) if spec.analysis.judge == "kayenta" else None
    return Evidence(metrics, SrmEvidence(), kayenta)


def _kayenta_series(series: Mapping[str, Any]) -> dict[str, tuple[tuple[float, float], ...]]:
    return {k: tuple((float(b), float(c)) for b, c in v) for k, v in series.items()}


def judge(
    spec: RolloutSpec,
    evidence: Evidence,
    observation: Observation | None,
    context: JudgeContext,
) -> tuple[Evidence, list[MetricVerdict]]:
    metrics: dict[str, MetricEvidence] = dict(evidence.metrics)
    srm, kayenta_state = evidence.srm, evidence.kayenta
    verdicts: list[MetricVerdict] = []
    missing = _missing_reason(observation, context)
    kayenta = spec.analysis.judge == "kayenta"
    if kayenta:  # the Kayenta-style judge replaces the error-rate and latency gates
        if missing is not None:
            verdicts.append(MetricVerdict(kayenta_gate.KEY, Verdict.NO_DATA, f"kayenta: {missing}"))
        else:
            assert observation is not None
            series, verdict = kayenta_gate.judge_kayenta(
                kayenta_state or {}, observation, context.assess_promotion, context.seed, spec.analysis.kayenta)
            kayenta_state = _kayenta_series(series)
            verdicts.append(verdict)
    for metric in spec.analysis.metrics:
        if kayenta and isinstance(metric, ErrorRateMetric | LatencyMetric):
            continue
        if missing is not None:
            verdicts.append(MetricVerdict(metric.name, Verdict.NO_DATA, f"{metric.name}: {missing}", gate=metric.gate))
            continue
        assert observation is not None and observation.baseline and observation.canary
        state = evidence.metrics[metric.name]
        if isinstance(metric, ErrorRateMetric):
            assert isinstance(state, RatioEvidence)
            metrics[metric.name], verdict = _judge_errors(spec, metric, state, observation, context)
        elif isinstance(metric, LatencyMetric):
            assert isinstance(state, EdgeEvidence)
            metrics[metric.name], verdict = _judge_latency(spec, metric, state, observation, context)
        elif isinstance(metric, TraceMetric):
            assert isinstance(state, EdgeEvidence)
            metrics[metric.name], verdict = _judge_traces(spec, metric, state, observation, context)
        else:
            assert isinstance(state, CustomEvidence)
            metrics[metric.name], verdict = _judge_custom(metric, state, observation)
        verdicts.append(verdict)
    if missing is None:
        assert observation is not None and observation.baseline and observation.canary
        srm, srm_verdict = _judge_srm(spec, srm, observation, context)
        verdicts.append(srm_verdict)
        outage = _shared_outage(spec, observation)
        if outage is not None:
            verdicts.append(outage)
    return Evidence(metrics, srm, kayenta_state), verdicts


def _missing_reason(observation: Observation | None, context: JudgeContext) -> str | None:
    if context.unavailable is not None:
        return f"source unavailable ({context.unavailable}); holding"
    if observation is None:
        return "no observation; holding"
    if observation.gap is not None:
        # One side lacked samples at an edge: neither side's counts cover the window, so both hold.
        return f"gap for both subsets ({observation.gap.why}); holding"
    if observation.baseline is None or observation.canary is None:
        which = "baseline and canary" if observation.baseline is None and observation.canary is None else (
            "baseline" if observation.baseline is None else "canary")
        return f"no data for the {which}; holding"
    if observation.canary.requests == 0:
        return "no canary traffic in this interval; holding"
    if context.warmup:
        return "canary warming up; interval excluded from evidence"
    return None


def _pct(events: float, requests: float) -> str:
    return f"{100.0 * events / requests:.2f}%" if requests else "n/a"


def _ratio_verdict(
    name: str,
    what: str,
    summary: RatioSummary,
    alpha_j: float,
    metric: ErrorRateMetric | LatencyMetric | TraceMetric,
    promoted: str | None,
    power: float | None,
) -> MetricVerdict:
    threshold = 1.0 / alpha_j
    e_value = math.exp(min(summary.log_e, 700.0))
    ratio = f"{summary.estimate:.2f}" if summary.estimate is not None else "n/a"
    ci = f" (CS {summary.ci[0]:.2f}–{summary.ci[1]:.2f})" if summary.ci else ""
    rates = (
        f"canary {_pct(summary.canary_events, summary.canary_requests)} "
        f"({summary.canary_events}/{summary.canary_requests}) vs baseline "
        f"{_pct(summary.baseline_events, summary.baseline_requests)} "
        f"({summary.baseline_events}/{summary.baseline_requests})"
    )
    if summary.log_e >= math.log(threshold):
        verdict = Verdict.FAIL
        tail = f"evidence {e_value:.0f} >= {threshold:.0f}: regression"
    elif promoted:
        verdict = Verdict.PASS
        tail = f"evidence {e_value:.2f} < {threshold:.0f}; {promoted}"
    else:
        verdict = Verdict.CONTINUE
        tail = f"evidence {e_value:.2f} < {threshold:.0f}"
        if summary.log_promotion_e > 0:
            tail += f"; non-inferiority evidence {math.exp(min(summary.log_promotion_e, 700.0)):.2f}"
        if power is not None:  # a planning figure, never a way to promote
            tail += f"; power {power:.2f} to catch a {metric.mde:g}x regression at this traffic"
    if summary.noise is not None and summary.noise.phi > 1.0 + 1e-9:
        tail += f" (interval noise bound {summary.noise.tau_upper:.2f}, evidence tempered by 1/{summary.noise.phi:.2f})"
    return MetricVerdict(
        metric=name,
        verdict=verdict,
        reason=f"{what}: {rates}, ratio {ratio}{ci}, {tail}",
        gate=metric.gate,
        e_value=e_value,
        threshold=threshold,
        promotion_e_value=math.exp(min(summary.log_promotion_e, 700.0)),
        ratio=summary.estimate,
        ci=summary.ci,
        canary={"requests": summary.canary_requests, "events": summary.canary_events},
        baseline={"requests": summary.baseline_requests, "events": summary.baseline_events},
        details={
            **({"power": power} if power is not None else {}),
            **({"noise_tau_upper": summary.noise.tau_upper, "noise_phi": summary.noise.phi}
               if summary.noise is not None else {}),
            "promotion_e_value_mde": math.exp(min(summary.log_promotion_e_mde, 700.0)),
        },
    )


def promotion_rules(spec: RolloutSpec, metric: ErrorRateMetric | LatencyMetric | TraceMetric) -> int:
    """How many promotion rules share the metric's promotionAlpha (each gets an equal part, union bound)."""
    return 1 + (metric.negligible_rate is not None) + spec.analysis.promote_at_mde_after_budget


def _promotion(
    spec: RolloutSpec,
    ev: RatioEvidence,
    summary: RatioSummary,
    metric: ErrorRateMetric | LatencyMetric | TraceMetric,
    alpha_j: float,
    context: JudgeContext,
) -> tuple[str | None, float | None]:
    """Promotion evidence, every rule a valid test within promotionAlpha per metric (statistics.md §5.6).

    Non-inferiority at the tolerance always; the opt-in negligible-rate rule and the opt-in non-inferiority at the
    MDE after the budget (decided by the policy) split the budget equally with it. The power to catch the MDE is a
    planning figure only. Returns (why it passes or None, the power when it was computed).
    """
    if not context.assess_promotion:
        return None, None
    log_bar = math.log(promotion_rules(spec, metric) / spec.analysis.promotion_alpha)
    if summary.log_promotion_e >= log_bar:
        return f"non-inferior (ratio < {metric.tolerance:g} shown)", None
    level = metric.negligible_rate
    if level is not None and negligible_log_e(ev.e_c, ev.n_c, level) >= log_bar:
        return f"negligible (canary rate < {100 * level:g}% shown)", None
    # The baseline's own rate: a worse canary must not inflate the power it is judged by.
    rate = ev.e_b / ev.n_b if ev.n_b else 0.0
    return None, detection_power(ev.exposure, rate, metric.mde, alpha_j, seed=context.seed)


def _ratio_states(evidence: Evidence, metric: ErrorRateMetric | LatencyMetric) -> list[RatioEvidence]:
    state = evidence.metrics.get(metric.name)
    if isinstance(state, RatioEvidence):
        return [state]
    if isinstance(state, EdgeEvidence):
        return list(state.edges.values())
    return []


def promotes_at_mde(spec: RolloutSpec, evidence: Evidence) -> tuple[bool, str]:
    """The opt-in rule after the budget: every gate ratio metric non-inferior at its MDE (its share of α_prom)."""
    parts: list[str] = []
    ok = True
    for m in spec.analysis.metrics:
        if not m.gate or not isinstance(m, ErrorRateMetric | LatencyMetric):
            continue
        bar = math.log(promotion_rules(spec, m) / spec.analysis.promotion_alpha)
        states = _ratio_states(evidence, m)
        good = bool(states) and all(ev.summary().log_promotion_e_mde >= bar for ev in states)
        ok = ok and good
        parts.append(f"{m.name} {'non-inferior' if good else 'not shown non-inferior'} at {m.mde:g}x")
    return ok and bool(parts), "; ".join(parts)


def inconclusive_note(spec: RolloutSpec, evidence: Evidence, seed: int = 0) -> str:
    """For an inconclusive end: the power each gate metric had to catch its MDE, and the traffic that would decide.

    Planning figures (statistics.md §7): the traffic multiple is the smallest of 2, 4, ..., 64 times the observed
    exposure at which a regression of the MDE would be caught with the spec's `power`.
    """
    notes: list[str] = []
    for m in spec.analysis.metrics:
        if not m.gate or not isinstance(m, ErrorRateMetric | LatencyMetric):
            continue
        worst: tuple[float, int | None] | None = None
        for ev in _ratio_states(evidence, m):
            if not ev.exposure:
                continue
            rate = ev.e_b / ev.n_b if ev.n_b else 0.0
            alpha_j = spec.analysis.alpha_for(m.name)
            power = detection_power(ev.exposure, rate, m.mde, alpha_j, replicates=200, seed=seed)
            multiple = None
            if power < spec.analysis.power and rate > 0:
                multiple = next((c for c in (2, 4, 8, 16, 32, 64) if detection_power(
                    [(a * c, b * c) for a, b in ev.exposure], rate, m.mde, alpha_j, replicates=200, seed=seed)
                    >= spec.analysis.power), None)
            if worst is None or power < worst[0]:
                worst = (power, multiple)
        if worst is None:
            continue
        power, multiple = worst
        text = f"{m.name}: power {power:.2f} to catch a {m.mde:g}x regression"
        if power < spec.analysis.power:
            text += (f"; about {multiple}x the observed traffic would reach {spec.analysis.power:g}"
                     if multiple else "; more than 64x the observed traffic would be needed")
        notes.append(text)
    return "; ".join(notes)


def _judge_errors(
    spec: RolloutSpec,
    metric: ErrorRateMetric,
    state: RatioEvidence,
    obs: Observation,
    context: JudgeContext,
) -> tuple[RatioEvidence, MetricVerdict]:
    assert obs.canary and obs.baseline
    ev = state.update(
        obs.canary.requests, obs.canary.errors, obs.baseline.requests, obs.baseline.errors
    )
    alpha_j = spec.analysis.alpha_for(metric.name) * context.alpha_share
    summary = ev.summary(alpha=spec.analysis.alpha)
    promoted, power = _promotion(spec, ev, summary, metric, alpha_j, context)
    verdict = _ratio_verdict(metric.name, "errors", summary, alpha_j, metric, promoted, power)
    return ev, verdict


def _edge_key(edge: float) -> str:
    return f"{edge:g}"


def _judge_latency(
    spec: RolloutSpec,
    metric: LatencyMetric,
    state: EdgeEvidence,
    obs: Observation,
    context: JudgeContext,
) -> tuple[EdgeEvidence, MetricVerdict]:
    c, b = obs.canary, obs.baseline
    assert c and b
    if not c.latency_le or not b.latency_le:
        return state, MetricVerdict(metric.name, Verdict.NO_DATA, f"{metric.name}: no latency histogram; holding",
                                          gate=metric.gate)
    counts: dict[float, tuple[int, int, int, int]] = {}
    for edge in metric.gate_edges:
        if edge not in obs.edges:
            return state, MetricVerdict(
                metric.name, Verdict.NO_DATA, f"{metric.name}: edge {edge:g} ms is not among the source's buckets",
                gate=metric.gate)
        j = obs.edges.index(edge)
        counts[edge] = (_n(c), c.slow(j), _n(b), b.slow(j))
    # Cumulative `le` counts over the rollout, per subset: descriptive quantiles, and each edge's tail slope.
    hist_c, hist_b = _add(state.hist_canary, c), _add(state.hist_baseline, b)
    pooled = np.add(hist_c, hist_b, dtype=float)
    bounds = dispersion.edge_priors(metric.interval_noise, obs.edges, pooled, [obs.edges.index(e) for e in counts])
    priors = {edge: float(v) for edge, v in zip(counts, bounds, strict=True)}
    edges, verdict = _judge_edges(spec, metric, state.edges, counts, context, "requests", priors)
    new = EdgeEvidence(edges, hist_c, hist_b)
    quantiles = {"canary": _quantiles(obs.edges, new.hist_canary),
                 "baseline": _quantiles(obs.edges, new.hist_baseline)}
    return new, replace(verdict, details={**verdict.details, "quantiles_ms": quantiles})


def _add(old: tuple[int, ...], counts: SubsetCounts) -> tuple[int, ...]:
    base = old or (0,) * len(counts.latency_le)
    return tuple(x + y for x, y in zip(base, counts.latency_le, strict=True))


def _quantiles(edges: tuple[float, ...], cum_le: tuple[int, ...]) -> dict[str, dict[str, float | None]]:
    """p50/p95/p99 by Prometheus interpolation, with a 95% order-statistic interval in bucket edges.

    Descriptive only: pooled over the rollout, so a weight ramp or drift moves them; the gate uses exceedances.
    """
    figures = _quantile_figures(edges, cum_le)
    return {name: {"estimate": est, "low": low, "high": high} for name, est, low, high in figures}


@lru_cache(maxsize=256)
def _quantile_figures(edges: tuple[float, ...],
                      cum_le: tuple[int, ...]) -> tuple[tuple[str, float | None, float, float | None], ...]:
    # Cached: a rollout's latency metrics share one histogram, so a tick asks for the same figures per metric.
    return tuple((f"p{round(qi.q * 100)}", None if math.isnan(qi.estimate) else round(qi.estimate, 1), qi.low,
                  None if math.isinf(qi.high) else qi.high)
                 for qi in quantile_intervals((0.5, 0.95, 0.99), edges, cum_le))


def _judge_traces(
    spec: RolloutSpec,
    metric: TraceMetric,
    state: EdgeEvidence,
    obs: Observation,
    context: JudgeContext,
) -> tuple[EdgeEvidence, MetricVerdict]:
    if obs.spans is None:
        return state, MetricVerdict(metric.name, Verdict.NO_DATA, f"{metric.name}: no trace source; holding",
                                          gate=metric.gate)
    from analyzer.traces.exceedance import trace_exceedance_counts

    t = spec.target
    counts = trace_exceedance_counts(obs.spans, metric.gate_edges, t.baseline.subset, t.canary.subset)
    edges, verdict = _judge_edges(spec, metric, state.edges, counts, context, "traces")
    return replace(state, edges=edges), verdict


def _judge_edges(
    spec: RolloutSpec,
    metric: LatencyMetric | TraceMetric,
    state: Mapping[str, RatioEvidence],
    counts: Mapping[float, tuple[int, int, int, int]],
    context: JudgeContext,
    unit: str,
    priors: Mapping[float, float] | None = None,
) -> tuple[dict[str, RatioEvidence], MetricVerdict]:
    """Exceedance e-processes at pre-registered edges, averaged (valid for "no edge worse", statistics.md §5.2).

    `priors`: each edge's prior noise bound for this interval (latency: scaled by the edge's tail slope).
    """
    alpha_j = spec.analysis.alpha_for(metric.name) * context.alpha_share
    new: dict[str, RatioEvidence] = {}
    per_edge: list[MetricVerdict] = []
    for edge, (n_c, s_c, n_b, s_b) in counts.items():
        key = _edge_key(edge)
        ev = state[key].update(n_c, s_c, n_b, s_b, prior=None if priors is None else priors[edge])
        new[key] = ev
        summary = ev.summary(alpha=spec.analysis.alpha)
        promoted, power = _promotion(spec, ev, summary, metric, alpha_j, context)
        per_edge.append(_ratio_verdict(f"{metric.name}>{key}ms", f"{unit} > {key} ms", summary, alpha_j, metric,
                                       promoted, power))
    e_avg = sum(v.e_value or 0.0 for v in per_edge) / len(per_edge)
    threshold = 1.0 / alpha_j
    if e_avg >= threshold:
        verdict = Verdict.FAIL
    elif all(v.verdict is Verdict.PASS for v in per_edge):
        verdict = Verdict.PASS
    else:
        verdict = Verdict.CONTINUE
    worst = max(per_edge, key=lambda v: v.e_value or 0.0)
    reason = f"{metric.name}: evidence {e_avg:.2f} {'>=' if e_avg >= threshold else '<'} {threshold:.0f}; " + \
        "; ".join(v.reason for v in per_edge)
    n_c, n_b = next(iter(counts.values()))[::2]
    return new, MetricVerdict(
        metric=metric.name,
        verdict=verdict,
        reason=reason,
        gate=metric.gate,
        e_value=e_avg,
        threshold=threshold,
        promotion_e_value=min(v.promotion_e_value or 0.0 for v in per_edge),
        ratio=worst.ratio,
        ci=worst.ci,
        canary={unit: float(n_c)},
        baseline={unit: float(n_b)},
        details={"edges": {v.metric.split(">")[1]: _edge_details(v) for v in per_edge}},
    )


def _n(counts: SubsetCounts) -> int:
    return counts.latency_le[-1]


def _edge_details(v: MetricVerdict) -> dict[str, Any]:
    return {
        "verdict": v.verdict.value, "e_value": v.e_value, "ratio": v.ratio, "ci": list(v.ci) if v.ci else None,
        "promotion_e_value": v.promotion_e_value, "canary_slow": v.canary.get("events"),
        "baseline_slow": v.baseline.get("events"), **v.details,
    }


def _judge_custom(
    metric: CustomMetric, state: CustomEvidence, obs: Observation
) -> tuple[CustomEvidence, MetricVerdict]:
    value = obs.custom.get(metric.name)
    failures = state.failures
    if value is None or value.canary is None or math.isnan(value.canary):
        return state, MetricVerdict(metric.name, Verdict.NO_DATA, f"{metric.name}: no data; holding",
                                                     gate=metric.gate)
    problems = []
    if metric.max is not None and value.canary > metric.max:
        problems.append(f"canary {value.canary:g} > max {metric.max:g}")
    if metric.min is not None and value.canary < metric.min:
        problems.append(f"canary {value.canary:g} < min {metric.min:g}")
    if metric.max_ratio is not None and value.baseline:
        ratio = value.canary / value.baseline
        if ratio > metric.max_ratio:
            problems.append(f"canary/baseline {ratio:.2f} > {metric.max_ratio:g}")
    failures = failures + 1 if problems else 0
    base = f"baseline {value.baseline:g}" if value.baseline is not None else "baseline n/a"
    if failures >= metric.failure_limit:
        verdict, tail = Verdict.FAIL, f"{failures} failed intervals in a row >= {metric.failure_limit}"
    elif problems:
        verdict, tail = Verdict.CONTINUE, f"failed {failures}/{metric.failure_limit}"
    else:
        verdict, tail = Verdict.PASS, "within bounds"
    reason = f"{metric.name}: canary {value.canary:g} vs {base}; " + ("; ".join(problems) + "; " if problems else "")
    tail += " (threshold rule, outside the alpha budget)"
    return CustomEvidence(failures), MetricVerdict(
        metric.name, verdict, reason + tail, gate=metric.gate,
        canary={"value": value.canary}, baseline={"value": value.baseline} if value.baseline is not None else {},
    )


def _judge_srm(
    spec: RolloutSpec, ev: SrmEvidence, obs: Observation, context: JudgeContext
) -> tuple[SrmEvidence, MetricVerdict]:
    assert obs.canary and obs.baseline
    guard = spec.analysis.guardrails
    if context.expected_share is None or not guard.srm_check:
        return ev, MetricVerdict(SRM_KEY, Verdict.CONTINUE, "traffic split: not checked in this phase",
                                           gate=False)
    ev = ev.update(obs.canary.requests, obs.baseline.requests, context.expected_share)
    threshold = 1.0 / guard.srm_alpha
    e_value = math.exp(min(ev.log_e, 700.0))
    observed = ev.observed_share
    seen = f"{100 * observed:.1f}%" if observed is not None else "n/a"
    text = f"traffic split: canary share {seen} vs configured {100 * context.expected_share:.0f}%, " \
           f"evidence {e_value:.2f}"
    if ev.log_e >= math.log(threshold):
        return ev, MetricVerdict(SRM_KEY, Verdict.HALT, f"{text} >= {threshold:.0f}: sample-ratio mismatch",
                                           e_value=e_value, threshold=threshold)
    return ev, MetricVerdict(SRM_KEY, Verdict.CONTINUE, f"{text} < {threshold:.0f}", gate=False,
                                       e_value=e_value, threshold=threshold)


def _shared_outage(spec: RolloutSpec, obs: Observation) -> MetricVerdict | None:
    """Both subsets breach an absolute level: a shared dependency, not the canary. Pause, never promote."""
    c, b = obs.canary, obs.baseline
    assert c and b
    if min(c.requests, b.requests) < MIN_REQUESTS_FOR_OUTAGE:
        return None
    guard = spec.analysis.guardrails
    found = []
    if c.errors / c.requests > guard.shared_error_rate and b.errors / b.requests > guard.shared_error_rate:
        found.append(f"errors canary {_pct(c.errors, c.requests)}, baseline {_pct(b.errors, b.requests)} "
                     f"> {100 * guard.shared_error_rate:g}%")
    slo = next((m.slo_ms for m in spec.analysis.metrics if isinstance(m, LatencyMetric) and m.slo_ms), None)
    if slo is not None and c.latency_le and b.latency_le and slo in obs.edges:
        j = obs.edges.index(slo)
        sc, sb = c.slow(j) / max(_n(c), 1), b.slow(j) / max(_n(b), 1)
        if sc > guard.shared_slow_share and sb > guard.shared_slow_share:
            found.append(f"requests > {slo:g} ms canary {100 * sc:.1f}%, baseline {100 * sb:.1f}% "
                         f"> {100 * guard.shared_slow_share:g}%")
    if not found:
        return None
    return MetricVerdict(OUTAGE_KEY, Verdict.HALT, "shared outage: " + "; ".join(found) + " (both subsets; no blame "
                         "on the canary)")
