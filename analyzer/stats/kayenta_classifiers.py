"""Kayenta's metric classifiers (`judge/classifiers/metric/*.scala`) with Kayenta's names and arguments.

`MannWhitneyClassifier` is what NetflixACAJudge runs (tolerance 0.25, confidence 0.98); `MeanInequalityClassifier`
is Kayenta's benchmark classifier that only compares the means. Neither catches errors: a sample whose pooled
values all tie raises ValueError, which the judge turns into the `Error` label, as Kayenta does.
The deviation (mean ratio) is 1.0 in each early exit (no data, identical samples, one value on both sides), never
NaN there; after the test it is NaN whenever a mean is 0, as in Kayenta.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from analyzer.stats.kayenta_mw import mann_whitney_u_test
from analyzer.stats.kayenta_stats import cles, mean, mean_ratio
from analyzer.stats.kayenta_transforms import JavaRandom, add_gaussian_noise

FloatArray = NDArray[np.float64]
Direction = Literal["increase", "decrease", "either"]
NanStrategy = Literal["remove", "replace"]

# Classification labels exactly as Kayenta names them.
PASS, HIGH, LOW, NODATA, NODATA_FAIL, ERROR = "Pass", "High", "Low", "Nodata", "NodataFailMetric", "Error"

NOISE_SCALE = 1e-5  # tie-breaking noise: this fraction of the constant value


@dataclass(frozen=True)
class MetricClassification:
    classification: str  # Pass | High | Low | Nodata | NodataFailMetric
    reason: str | None
    deviation: float  # mean ratio experiment/control: Kayenta's resultMetadata.ratio
    critical: bool  # True only for a critical failure (zeroes the canary score)
    # Not in Kayenta's result (kayenta#521); kept for our reports. None when the test did not run.
    lower: float | None = None
    upper: float | None = None
    estimate: float | None = None
    effect_size: float = math.nan


def _array(values: ArrayLike) -> FloatArray:
    return np.asarray(values, dtype=float).ravel()


def _no_data(name: str, nan_strategy: NanStrategy, critical: bool, required: bool,
             nodata_deviation: float, reason: bool) -> MetricClassification:
    why = f"Missing data for {name}" if reason else None
    if nan_strategy != "remove":
        # Kayenta's gotcha: under `replace` an absent series passes silently (Kayenta gives no reason).
        return MetricClassification(PASS, why and f"{why} (nanStrategy=replace passes)", 1.0, False)
    if required and not critical:
        return MetricClassification(NODATA_FAIL, why, 1.0, False)
    return MetricClassification(NODATA, why, nodata_deviation, critical)


class MannWhitneyClassifier:
    """Mann–Whitney CI for the shift, a tolerance band of ±tolerance·|estimate|, and an effect-size gate.

    Thresholds are (decrease, increase) pairs, as in Kayenta.
    """

    def __init__(
        self,
        tolerance: float = 0.25,
        conf_level: float = 0.95,
        effect_size_thresholds: tuple[float, float] = (1.0, 1.0),
        critical_thresholds: tuple[float, float] = (1.0, 1.0),
        effect_size_measure: Literal["meanRatio", "cles"] = "meanRatio",
        rng: JavaRandom | None = None,
    ) -> None:
        self.tolerance = tolerance
        self.conf_level = conf_level
        self.effect_size_thresholds = effect_size_thresholds
        self.critical_thresholds = critical_thresholds
        self.effect_size_measure = effect_size_measure
        self.rng = rng if rng is not None else JavaRandom(0)

    def _add_noise(self, values: FloatArray) -> FloatArray:
        return add_gaussian_noise(values, mean=0.0, stdev=float(values[0]) * NOISE_SCALE, rng=self.rng)

    def classify(
        self,
        control: ArrayLike,
        experiment: ArrayLike,
        direction: Direction = "either",
        nan_strategy: NanStrategy = "remove",
        is_critical_metric: bool = False,
        is_data_required: bool = False,
        name: str = "metric",
    ) -> MetricClassification:
        c, e = _array(control), _array(experiment)
        if e.size == 0 or c.size == 0:
            return _no_data(name, nan_strategy, is_critical_metric, is_data_required, 1.0, reason=True)
        if e.size == c.size and np.array_equal(np.sort(e), np.sort(c)):
            return MetricClassification(PASS, "The Canary and Baseline data are identical", 1.0, False)
        if np.unique(np.concatenate((e, c))).size == 1:
            return MetricClassification(PASS, "All Canary and Baseline values are the same", 1.0, False)

        if np.unique(e).size == 1 and np.unique(c).size == 1:
            # Two different constants: jitter each side by 1e-5 of its value to break the ties.
            e, c = self._add_noise(e), self._add_noise(c)
        mw = mann_whitney_u_test(e, c, self.conf_level)
        lower, upper = mw.confidence_interval
        deviation = mean_ratio(c, e)
        effect = cles(c, e) if self.effect_size_measure == "cles" else deviation
        band = self.tolerance * abs(mw.estimate)
        nan_effect = math.isnan(effect)
        allowed_decrease, allowed_increase = self.effect_size_thresholds
        label, reason = PASS, None
        if direction in ("increase", "either") and lower > band and (nan_effect or effect >= allowed_increase):
            label, reason = HIGH, f"{name} was classified as {HIGH}"
        elif direction in ("decrease", "either") and upper < -band and (nan_effect or effect <= allowed_decrease):
            label, reason = LOW, f"{name} was classified as {LOW}"

        critical_decrease, critical_increase = self.critical_thresholds
        critical = is_critical_metric and (
            (label == HIGH and (nan_effect or effect >= critical_increase))
            or (label == LOW and (nan_effect or effect <= critical_decrease)))
        if critical:
            reason = f"The metric {name} was classified as {label} (Critical)"
        return MetricClassification(label, reason, deviation, critical, lower, upper, mw.estimate, effect)


class MeanInequalityClassifier:
    """High when the canary mean is above the baseline mean, Low when below; no test (a benchmark)."""

    def classify(
        self,
        control: ArrayLike,
        experiment: ArrayLike,
        direction: Direction = "either",
        nan_strategy: NanStrategy = "remove",
        is_critical_metric: bool = False,
        is_data_required: bool = False,
        name: str = "metric",
    ) -> MetricClassification:
        c, e = _array(control), _array(experiment)
        if e.size == 0 or c.size == 0:
            # Kayenta reports deviation 0.0 for this classifier's Nodata.
            return _no_data(name, nan_strategy, is_critical_metric, is_data_required, 0.0, reason=False)
        e_mean, c_mean = mean(e), mean(c)
        ratio = e_mean / c_mean if c_mean != 0 else math.copysign(math.inf, e_mean) if e_mean else math.nan
        if direction in ("increase", "either") and e_mean > c_mean:
            return MetricClassification(HIGH, "The Canary mean was greater than the Baseline mean", ratio,
                                        is_critical_metric)
        if direction in ("decrease", "either") and e_mean < c_mean:
            return MetricClassification(LOW, "The Canary mean was less than the Baseline mean", ratio,
                                        is_critical_metric)
        return MetricClassification(PASS, None, 1.0, False)
