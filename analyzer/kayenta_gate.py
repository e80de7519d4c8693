"""`analysis.judge: kayenta`: the NetflixACAJudge-compatible judge as the rollout's gate.

Kayenta judges per-interval series on a growing window (peers.md §b.7), Mann–Whitney at 0.98 with a tolerance
band. Without `analysis.kayenta` the series are the error ratio, p99 and mean latency of each subset; with it,
they are the block's metrics, one value per subset per interval from each metric's PromQL template (a missing
value is a NaN point, handled by the metric's nanStrategy). A score at or below the marginal threshold rolls
back; at the last step a score at or above the pass threshold promotes. It carries no type-I control over
repeated looks; it exists for teams moving from Kayenta and as a benchmark peer.

One departure from Kayenta, for our rule that missing data never promotes and never rolls back: where the
score is zeroed only by missing data (50% or more metrics Nodata, or a critical metric Nodata), the gate holds
instead of failing, and a passing score with a Nodata metric holds instead of promoting. `mustHaveData` metrics
(NodataFailMetric) still count as failures, as their owner asked.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from analyzer.config import KayentaAnalysis
from analyzer.model import MetricVerdict, Observation, SubsetCounts, Verdict
from analyzer.stats.histogram import binned_mean, histogram_quantile
from analyzer.stats.kayenta import NODATA, PASS, Judgement, KayentaConfig, MetricConfig, judge

KEY = "kayenta"
SERIES = ("error_ratio", "p99", "mean_latency")
WARMUP_INTERVALS = 3  # Kayenta needs a few points per side before a judgement means anything
DEFAULT_CONFIG = KayentaConfig(tuple(MetricConfig(name, groups=("canary",), direction="increase") for name in SERIES))


def kayenta_config(block: KayentaAnalysis | None) -> KayentaConfig:
    """The judge's configuration: the spec's `analysis.kayenta` block, or the three default series."""
    if block is None:
        return DEFAULT_CONFIG
    metrics = tuple(
        MetricConfig(
            m.name,
            groups=tuple(m.groups),
            direction=m.direction,
            nan_strategy=m.nan_strategy,
            outlier_strategy=m.outliers.strategy,
            outlier_factor=m.outliers.outlier_factor,
            critical=m.critical,
            must_have_data=m.must_have_data,
            effect_measure=m.effect_size.measure,
            allowed_increase=m.effect_size.allowed_increase,
            allowed_decrease=m.effect_size.allowed_decrease,
            critical_increase=m.effect_size.critical_increase,
            critical_decrease=m.effect_size.critical_decrease,
        )
        for m in block.metrics
    )
    return KayentaConfig(metrics, dict(block.group_weights), block.score_thresholds.pass_,
                         block.score_thresholds.marginal)


def initial(block: KayentaAnalysis | None = None) -> dict[str, Any]:
    return {m.name: [] for m in kayenta_config(block).metrics}


def _default_values(counts: SubsetCounts, edges: tuple[float, ...]) -> dict[str, float]:
    err = counts.errors / counts.requests if counts.requests else math.nan
    if counts.latency_le and counts.latency_le[-1]:
        p99 = float(histogram_quantile(0.99, edges, counts.latency_le))
        mean = float(binned_mean(edges, counts.latency_le))
    else:
        p99 = mean = math.nan
    return {"error_ratio": err, "p99": p99, "mean_latency": mean}


def _points(obs: Observation, block: KayentaAnalysis | None) -> dict[str, tuple[float, float]]:
    """(baseline, canary) per metric for this interval; NaN = no data for that side."""
    if block is None:
        assert obs.canary and obs.baseline
        c, b = _default_values(obs.canary, obs.edges), _default_values(obs.baseline, obs.edges)
        return {name: (b[name], c[name]) for name in SERIES}
    out = {}
    for m in block.metrics:
        value = obs.custom.get(m.observation_key)
        base = value.baseline if value is not None and value.baseline is not None else math.nan
        canary = value.canary if value is not None and value.canary is not None else math.nan
        out[m.name] = (float(base), float(canary))
    return out


def judge_kayenta(
    state: Mapping[str, Any], obs: Observation, assess_promotion: bool, seed: int,
    block: KayentaAnalysis | None = None,
) -> tuple[dict[str, Any], MetricVerdict]:
    config = kayenta_config(block)
    points = _points(obs, block)
    series = {m.name: [*state.get(m.name, []), list(points[m.name])] for m in config.metrics}
    count = max((len(rows) for rows in series.values()), default=0)
    if count < WARMUP_INTERVALS:
        return series, MetricVerdict(KEY, Verdict.CONTINUE, f"kayenta: warming up ({count}/{WARMUP_INTERVALS} "
                                     "intervals)")
    data = {name: ([p[0] for p in rows], [p[1] for p in rows]) for name, rows in series.items()}
    j = judge(data, config, seed=seed)
    labels = ", ".join(f"{m.name} {m.classification}" for m in j.metrics)
    text = f"kayenta: score {j.score:.0f} ({labels}) over {count} intervals"
    nodata = [m.name for m in j.metrics if not m.muted and m.classification == NODATA]
    if j.score <= config.marginal_threshold and _zeroed_by_missing_data(j):
        verdict, text = Verdict.NO_DATA, f"{text}: no data for {', '.join(nodata)}; holding"
    elif j.score <= config.marginal_threshold:
        verdict, text = Verdict.FAIL, f"{text} <= marginal {config.marginal_threshold:.0f}"
    elif assess_promotion and j.score >= config.pass_threshold and nodata:
        verdict, text = Verdict.NO_DATA, f"{text}: no data for {', '.join(nodata)}; holding instead of promoting"
    elif assess_promotion and j.score >= config.pass_threshold:
        verdict, text = Verdict.PASS, f"{text} >= pass {config.pass_threshold:.0f}"
    else:
        verdict = Verdict.CONTINUE
    return series, MetricVerdict(KEY, verdict, text, details={"score": j.score})


def _zeroed_by_missing_data(j: Judgement) -> bool:
    """Kayenta's score is 0 only because of Nodata: the 50% rule, or critical metrics that are all Nodata."""
    active = [m for m in j.metrics if not m.muted]
    critical = [m for m in active if m.critical and m.classification != PASS]
    if critical:
        return all(m.classification == NODATA for m in critical)
    return bool(active) and 2 * sum(m.classification == NODATA for m in active) >= len(active)
