"""Kayenta's preprocessing: NaN handling, outlier detectors and the tie-breaking Gaussian noise.

Ports `judge/preprocessing/Transforms.scala`, `judge/detectors/{IQRDetector,KSigmaDetector}.scala` and
`judge/utils/RandomUtils.scala` with Kayenta's names and arguments. Detectors return a mask (True = outlier).
Kayenta draws noise from one global, unseeded `scala.util.Random`; here the generator is passed in, so a judgement
is reproducible, and the draws differ from the JVM's (only their distribution is Kayenta's).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray

from analyzer.stats.kayenta_stats import mean, percentile, population_variance

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]


def _array(data: ArrayLike) -> FloatArray:
    return np.asarray(data, dtype=float).ravel()


class IQRDetector:
    """Tukey fences Q1 − factor·IQR and Q3 + factor·IQR (R-7 quartiles).

    With `reduce_sensitivity` (what the judge uses) the fences widen to min(P1, lower) and max(P99, upper).
    """

    def __init__(self, factor: float = 1.5, reduce_sensitivity: bool = False) -> None:
        if not factor > 0.0:
            raise ValueError("factor must be greater than zero")
        self.factor = factor
        self.reduce_sensitivity = reduce_sensitivity

    def _iqr_fences(self, data: FloatArray) -> tuple[float, float]:
        p75, p25 = percentile(data, 75), percentile(data, 25)
        iqr = p75 - p25
        return p25 - self.factor * iqr, p75 + self.factor * iqr

    def detect(self, data: ArrayLike) -> BoolArray:
        a = _array(data)
        if a.size == 0:
            return np.zeros(0, dtype=bool)
        lower, upper = self._iqr_fences(a)
        if self.reduce_sensitivity:
            lower, upper = min(percentile(a, 1), lower), max(percentile(a, 99), upper)
        return (a > upper) | (a < lower)


class KSigmaDetector:
    """Points more than k population standard deviations from the mean."""

    def __init__(self, k: float = 3.0) -> None:
        if not k > 0.0:
            raise ValueError("k must be greater than zero")
        self.k = k

    def detect(self, data: ArrayLike) -> BoolArray:
        a = _array(data)
        if a.size == 0:
            return np.zeros(0, dtype=bool)
        centre, sd = mean(a), math.sqrt(population_variance(a))
        return np.abs(a - centre) > sd * self.k


OutlierDetector = IQRDetector | KSigmaDetector


def remove_nans(data: ArrayLike) -> FloatArray:
    a = _array(data)
    return a[~np.isnan(a)]


def replace_nans(data: ArrayLike, value: float) -> FloatArray:
    a = _array(data)
    return np.where(np.isnan(a), value, a)


def remove_outliers(data: ArrayLike, detector: OutlierDetector) -> FloatArray:
    a = _array(data)
    return a[~detector.detect(a)]


def normal(mean: float, stdev: float, num_samples: int, rng: np.random.Generator | None = None) -> FloatArray:
    """`RandomUtils.normal`: draw·stdev + mean, so stdev 0 gives exactly `mean` (and a negative stdev is allowed)."""
    gen = rng if rng is not None else np.random.default_rng()
    return gen.standard_normal(num_samples) * stdev + mean


def add_gaussian_noise(
    data: ArrayLike, mean: float = 0.0, stdev: float = 1.0, rng: np.random.Generator | None = None
) -> FloatArray:
    a = _array(data)
    return a + normal(mean, stdev, a.size, rng)
