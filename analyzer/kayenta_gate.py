"""`analysis.judge: kayenta`: the NetflixACAJudge-compatible judge as the rollout's gate.

Kayenta judges per-interval series on a growing window (peers.md §b.7): the error ratio, p99 and mean
latency of each subset, Mann–Whitney at 0.98 with a tolerance band. A score at or below the marginal
threshold rolls back; at the last step a score at or above the pass threshold promotes. It carries no
type-I control over repeated looks; it exists for teams moving from Kayenta and as a benchmark peer.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from analyzer.model import MetricVerdict, Observation, SubsetCounts, Verdict
from analyzer.stats.histogram import binned_mean, histogram_quantile
from analyzer.stats.kayenta import KayentaConfig, MetricConfig, judge

KEY = "kayenta"
SERIES = ("error_ratio", "p99", "mean_latency")
WARMUP_INTERVALS = 3  # Kayenta needs a few points per side before a judgement means anything
CONFIG = KayentaConfig(tuple(MetricConfig(name, groups=("canary",), direction="increase") for name in SERIES))


def initial() -> dict[str, Any]:
    return {name: [] for name in SERIES}


def _values(counts: SubsetCounts, edges: tuple[float, ...]) -> dict[str, float]:
    err = counts.errors / counts.requests if counts.requests else math.nan
    if counts.latency_le and counts.latency_le[-1]:
        p99 = float(histogram_quantile(0.99, edges, counts.latency_le))
        mean = float(binned_mean(edges, counts.latency_le))
    else:
        p99 = mean = math.nan
    return {"error_ratio": err, "p99": p99, "mean_latency": mean}


def judge_kayenta(
    state: Mapping[str, Any], obs: Observation, assess_promotion: bool, seed: int
) -> tuple[dict[str, Any], MetricVerdict]:
    assert obs.canary and obs.baseline
    c, b = _values(obs.canary, obs.edges), _values(obs.baseline, obs.edges)
    series = {name: [*state.get(name, []), [b[name], c[name]]] for name in SERIES}
    points = len(series["error_ratio"])
    if points < WARMUP_INTERVALS:
        return series, MetricVerdict(KEY, Verdict.CONTINUE, f"kayenta: warming up ({points}/{WARMUP_INTERVALS} "
                                     "intervals)")
    data = {name: ([p[0] for p in rows], [p[1] for p in rows]) for name, rows in series.items()}
    j = judge(data, CONFIG, seed=seed)
    labels = ", ".join(f"{m.name} {m.classification}" for m in j.metrics)
    text = f"kayenta: score {j.score:.0f} ({labels}) over {points} intervals"
    if j.score <= CONFIG.marginal_threshold:
        verdict, text = Verdict.FAIL, f"{text} <= marginal {CONFIG.marginal_threshold:.0f}"
    elif assess_promotion and j.score >= CONFIG.pass_threshold:
        verdict, text = Verdict.PASS, f"{text} >= pass {CONFIG.pass_threshold:.0f}"
    else:
        verdict = Verdict.CONTINUE
    return series, MetricVerdict(KEY, verdict, text, details={"score": j.score})
