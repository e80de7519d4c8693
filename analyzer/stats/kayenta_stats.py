"""Kayenta's descriptive statistics and effect sizes (`judge/stats/{DescriptiveStatistics,EffectSizes}.scala`).

Names and argument order follow Kayenta (control first, experiment second), so its StatisticSuite ports one to
one. Sums run left to right like commons-math's loops, so means and variances match Kayenta to the last bit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike


@dataclass(frozen=True)
class MetricStatistics:
    """Kayenta's per-side summary in the report: min, max, mean, sample std and count (zeros when empty)."""

    min: float
    max: float
    mean: float
    std: float
    count: int


def _values(data: ArrayLike) -> list[float]:
    return [float(v) for v in np.asarray(data, dtype=float).ravel()]


def _mean(values: Sequence[float]) -> float:
    # commons-math Mean: the plain mean plus a second-pass correction term.
    n = float(len(values))
    xbar = sum(values) / n
    correction = sum(v - xbar for v in values)
    return xbar + correction / n


def _variance(values: Sequence[float], bias_corrected: bool = True) -> float:
    # commons-math Variance.evaluate(values, mean): corrected two-pass formula; one value has variance 0.
    if len(values) == 1:
        return 0.0
    m = _mean(values)
    accum = 0.0
    accum2 = 0.0
    for v in values:
        dev = v - m
        accum += dev * dev
        accum2 += dev
    n = float(len(values))
    return (accum - accum2 * accum2 / n) / (n - 1.0 if bias_corrected else n)


def mean(data: ArrayLike) -> float:
    values = _values(data)
    return _mean(values) if values else 0.0


def std(data: ArrayLike) -> float:
    values = _values(data)
    return math.sqrt(_variance(values)) if values else 0.0


def population_variance(data: ArrayLike) -> float:
    values = _values(data)
    return _variance(values, bias_corrected=False) if values else math.nan


def percentile(data: ArrayLike, p: float) -> float:
    """Kayenta's `DescriptiveStatistics.percentile`: the R-7 estimate (linear interpolation, numpy's default).

    NaN when there is no data; p is in (0, 100].
    """
    if not 0 < p <= 100:
        raise ValueError(f"percentile {p!r} is outside (0, 100]")
    work = sorted(_values(data))
    if not work:
        return math.nan
    if len(work) == 1:
        return work[0]
    q = p / 100.0
    pos = float(len(work)) if q == 1.0 else 1 + (len(work) - 1) * q  # commons-math R_7 index, 1-based
    fpos = math.floor(pos)
    dif = pos - fpos
    if pos < 1:
        return work[0]
    if pos >= len(work):
        return work[-1]
    lower, upper = work[int(fpos) - 1], work[int(fpos)]
    return lower + dif * (upper - lower)


def summary(data: ArrayLike) -> MetricStatistics:
    """Kayenta's `DescriptiveStatistics.summary`."""
    values = _values(data)
    if not values:
        return MetricStatistics(0.0, 0.0, 0.0, 0.0, 0)
    return MetricStatistics(min(values), max(values), _mean(values), math.sqrt(_variance(values)), len(values))


def mean_ratio(control: ArrayLike, experiment: ArrayLike) -> float:
    """experiment mean / control mean; NaN when either mean is 0 (Kayenta's "deviation")."""
    return mean_ratio_of_stats(summary(control), summary(experiment))


def mean_ratio_of_stats(control: MetricStatistics, experiment: MetricStatistics) -> float:
    """Kayenta's `EffectSizes.meanRatio(control: MetricStatistics, experiment: MetricStatistics)`."""
    if control.mean == 0.0 or experiment.mean == 0.0:
        return math.nan
    return experiment.mean / control.mean


def cohen_d(control: ArrayLike, experiment: ArrayLike) -> float:
    """Cohen's d with the pooled standard deviation (`EffectSizes.cohenD`)."""
    return cohen_d_of_stats(summary(control), summary(experiment))


def cohen_d_of_stats(control: MetricStatistics, experiment: MetricStatistics) -> float:
    pooled = math.sqrt(((experiment.count - 1) * experiment.std**2 + (control.count - 1) * control.std**2)
                       / (control.count + experiment.count - 2))
    diff = abs(experiment.mean - control.mean)
    if pooled == 0:  # Java's double division: x/0 is infinite, 0/0 is NaN
        return math.inf if diff > 0 else math.nan
    return diff / pooled


def cles(control: ArrayLike, experiment: ArrayLike) -> float:
    """Common-language effect size: P(E > C) + ½ P(E = C), from average ranks (Vargha and Delaney 2000)."""
    e = np.asarray(experiment, dtype=float).ravel()
    c = np.asarray(control, dtype=float).ravel()
    m, n = e.size, c.size
    from scipy import stats  # here: only a Kayenta gate needs it, and scipy.stats costs the service ~50 MB

    r1 = float(stats.rankdata(np.concatenate((e, c)), method="average")[:m].sum())
    return (2 * r1 - m * (m + 1)) / (2 * n * m)
