"""Port of Kayenta's `kayenta-judge/src/test/scala/com/netflix/kayenta/judge/StatisticSuite.scala`.

Scala's `===` on doubles is exact equality, kept here as `==`; `+- tol` becomes pytest.approx(abs=tol).
"""

import math

import pytest

from analyzer.stats.kayenta_stats import (
    MetricStatistics,
    cohen_d,
    mean_ratio,
    mean_ratio_of_stats,
    percentile,
    summary,
)


def test_summary_scalar() -> None:
    """StatisticSuite.scala, test "Summary Statistics: Scalar"."""
    assert summary([4.0]) == MetricStatistics(4, 4, 4, 0, 1)


def test_summary_list() -> None:
    """StatisticSuite.scala, test "Summary Statistics: List"."""
    result = summary([1.0, 1.0, 1.0, 10.0, 10.0, 10.0])
    assert (result.min, result.max, result.mean) == (1.0, 10.0, 5.5)
    assert result.std == pytest.approx(4.9295, abs=1e-4)
    assert result.count == 6


def test_summary_no_data() -> None:
    """StatisticSuite.scala, test "Summary Statistics: No Data"."""
    assert summary([]) == MetricStatistics(0, 0, 0, 0, 0)


def test_basic_percentile() -> None:
    """StatisticSuite.scala, test "Summary Statistics: Basic Percentile"."""
    data = [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5]
    assert percentile(data, 5) == pytest.approx(0.175, abs=1.0e-4)
    assert percentile(data, 50) == 1.75
    assert percentile(data, 100) == 3.5


def test_basic_percentile_estimate_linear_interpolation() -> None:
    """StatisticSuite.scala, test "Summary Statistics: Basic Percentile Estimate (Linear Interpolation)"."""
    assert percentile([0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0], 50) == 4.5


def test_percentile_nist_data() -> None:
    """StatisticSuite.scala, test "Summary Statistics: Percentile (NIST Data)" (exact equality, as in Kayenta)."""
    data = [95.1772, 95.1567, 95.1937, 95.1959, 95.1442, 95.0610,
            95.1591, 95.1195, 95.1772, 95.0925, 95.1990, 95.1682]
    assert percentile(data, 90) == 95.19568


def test_percentile_metric_object() -> None:
    """StatisticSuite.scala, test "Summary Statistics: Percentile Metric Object"."""
    assert percentile([1.0], 100) == 1.0


def test_percentile_estimate_linear_interpolation() -> None:
    """StatisticSuite.scala, test "Summary Statistics: Percentile Estimate (Linear Interpolation)"."""
    data = [
        0.07142857142857144, 0.02083333333333332, 0.16666666666666666,
        0.03448275862068966, 0.038461538461538464, 0.03225806451612904,
        0.027777777777777773, 0.0, 0.23076923076923078, 0.10344827586206898,
        0.04545454545454542, 0.0, 0.028571428571428564, 0.0, 0.0, 0.04, 0.0, 0.0,
        0.05128205128205127, 0.10714285714285716, 0.0263157894736842,
        0.04166666666666667, 0.09523809523809522, 0.02941176470588235,
        0.024999999999999984, 0.0, 0.0, 0.023809523809523794, 0.0,
        0.02564102564102563, 0.0, 0.0, 0.028571428571428564, 0.07142857142857144,
        0.047619047619047596, 0.021276595744680833, 0.02564102564102563, 0.03125,
        0.03125, 0.03125, 0.11363636363636356, 0.03571428571428572, 0.0,
        0.02777777777777777, 0.0, 0.0, 0.055555555555555546, 0.028571428571428564,
        0.03225806451612904,
    ]
    assert percentile(data, 25) == 0.0
    assert percentile(data, 75) == pytest.approx(0.0416, abs=1.0e-4)


def test_mean_ratio_no_effect() -> None:
    """StatisticSuite.scala, test "Effect Size: Mean Ratio (No Effect)"."""
    assert mean_ratio([1.0] * 5, [1.0] * 5) == 1.0


def test_mean_ratio_summary_stats() -> None:
    """StatisticSuite.scala, test "Effect Size: Mean Ratio (Summary Stats)"."""
    assert mean_ratio_of_stats(summary([1.0] * 5), summary([1.0] * 5)) == 1.0


def test_mean_ratio_high() -> None:
    """StatisticSuite.scala, test "Effect Size: Mean Ratio (High)"."""
    assert mean_ratio([1.0] * 5, [10.0] * 5) == 10.0


def test_mean_ratio_low() -> None:
    """StatisticSuite.scala, test "Effect Size: Mean Ratio (Low)"."""
    assert mean_ratio([100.0] * 5, [10.0] * 5) == 0.1


def test_mean_ratio_zero_mean() -> None:
    """StatisticSuite.scala, test "Effect Size: Mean Ratio (Zero Mean)"."""
    assert math.isnan(mean_ratio([0.0] * 5, [10.0] * 5))


def test_cohens_d() -> None:
    """StatisticSuite.scala, test "Effect Size: Cohen's D" (Kayenta passes experiment first; d is symmetric)."""
    experiment = [5.0, 5.0, 5.0, 10.0, 10.0, 10.0]
    control = [1.0, 1.0, 1.0, 2.0, 2.0, 2.0]
    assert cohen_d(experiment, control) == pytest.approx(3.03821, abs=1e-5)
    assert cohen_d(control, experiment) == cohen_d(experiment, control)


def test_percentile_of_no_data_is_nan() -> None:
    """Not in the suite: Kayenta's percentile documents NaN for an empty array."""
    assert math.isnan(percentile([], 50))
