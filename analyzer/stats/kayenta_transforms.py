"""Kayenta's preprocessing: NaN handling, outlier detectors and the tie-breaking Gaussian noise.

Ports `judge/preprocessing/Transforms.scala`, `judge/detectors/{IQRDetector,KSigmaDetector}.scala` and
`judge/utils/RandomUtils.scala` with Kayenta's names and arguments. Detectors return a mask (True = outlier).
Kayenta draws noise from one global `scala.util.Random` (java.util.Random); `JavaRandom` reproduces that generator
draw for draw, so a seeded run gives Kayenta's numbers, and the generator is passed in instead of being global.
Production Kayenta leaves it unseeded, so its noise cannot be reproduced; ours is seeded per judgement.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray

from analyzer.stats.kayenta_stats import mean, percentile, population_variance

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]


class JavaRandom:
    """java.util.Random: the 48-bit LCG and the polar-method `nextGaussian` Kayenta's RandomUtils uses."""

    _MULTIPLIER = 0x5DEECE66D
    _ADDEND = 0xB
    _MASK = (1 << 48) - 1

    def __init__(self, seed: int = 0) -> None:
        self._seed = (seed ^ self._MULTIPLIER) & self._MASK
        self._next_gaussian: float | None = None

    def _next(self, bits: int) -> int:
        self._seed = (self._seed * self._MULTIPLIER + self._ADDEND) & self._MASK
        value = self._seed >> (48 - bits)
        return value - (1 << bits) if bits == 32 and value >= 1 << 31 else value

    def next_double(self) -> float:
        return ((self._next(26) << 27) + self._next(27)) * 2.0**-53

    def next_gaussian(self) -> float:
        if self._next_gaussian is not None:
            value, self._next_gaussian = self._next_gaussian, None
            return value
        while True:
            v1 = 2 * self.next_double() - 1
            v2 = 2 * self.next_double() - 1
            s = v1 * v1 + v2 * v2
            if 0 < s < 1:
                break
        multiplier = math.sqrt(-2 * math.log(s) / s)
        self._next_gaussian = v2 * multiplier
        return v1 * multiplier


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


def normal(mean: float, stdev: float, num_samples: int, rng: JavaRandom | None = None) -> FloatArray:
    """`RandomUtils.normal`: draw·stdev + mean, so stdev 0 gives exactly `mean` (and a negative stdev is allowed)."""
    gen = rng if rng is not None else JavaRandom()
    return np.array([gen.next_gaussian() * stdev + mean for _ in range(num_samples)], dtype=float)


def add_gaussian_noise(
    data: ArrayLike, mean: float = 0.0, stdev: float = 1.0, rng: JavaRandom | None = None
) -> FloatArray:
    a = _array(data)
    return a + normal(mean, stdev, a.size, rng)
