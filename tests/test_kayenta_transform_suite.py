"""Port of Kayenta's `kayenta-judge/src/test/scala/com/netflix/kayenta/judge/TransformSuite.scala`, plus the
RandomUtils cases of `UtilsSuite.scala` that the noise transform rests on."""

import pytest

from analyzer.stats.kayenta_transforms import (
    IQRDetector,
    JavaRandom,
    KSigmaDetector,
    add_gaussian_noise,
    normal,
    remove_nans,
    remove_outliers,
    replace_nans,
)

NAN = float("nan")


def test_remove_single_nan() -> None:
    """TransformSuite.scala, test "Remove Single NaN"."""
    assert remove_nans([0.0, 1.0, NAN, 1.0, 0.0]).tolist() == [0.0, 1.0, 1.0, 0.0]


def test_remove_multiple_nan() -> None:
    """TransformSuite.scala, test "Remove Multiple NaN"."""
    assert remove_nans([NAN, NAN, NAN]).tolist() == []


def test_replace_nans() -> None:
    """TransformSuite.scala, test "Replace NANs"."""
    result = replace_nans([NAN, 10.10, 20.20, 30.30, NAN, 40.40], 0.0)
    assert result.tolist() == [0.0, 10.10, 20.20, 30.30, 0.0, 40.40]


def test_iqr_outlier_removal() -> None:
    """TransformSuite.scala, test "IQR Outlier Removal"."""
    result = remove_outliers([21.0, 23.0, 24.0, 25.0, 50.0, 29.0, 23.0, 21.0], IQRDetector(factor=1.5))
    assert result.tolist() == [21.0, 23.0, 24.0, 25.0, 29.0, 23.0, 21.0]


def test_ksigma_outlier_removal() -> None:
    """TransformSuite.scala, test "KSigma Outlier Removal"."""
    result = remove_outliers([1.0, 1.0, 1.0, 1.0, 1.0, 20.0, 1.0, 1.0, 1.0, 1.0, 1.0], KSigmaDetector(k=3.0))
    assert result.tolist() == [1.0] * 10


def test_add_gaussian_noise() -> None:
    """TransformSuite.scala, test "Add Gaussian Noise" (seed 12345, java.util.Random)."""
    transformed = add_gaussian_noise([0.0] * 5, mean=1.0, stdev=1.0, rng=JavaRandom(12345))
    assert transformed.mean() == pytest.approx(1.0, abs=0.2)
    assert transformed.std(ddof=1) == pytest.approx(1.0, abs=0.2)
    assert transformed.size == 5


def test_random_samples_zero_mean() -> None:
    """UtilsSuite.scala, test "RandomUtils List of Random Samples (Zero Mean)"."""
    sample = normal(mean=0.0, stdev=1.0, num_samples=500, rng=JavaRandom(123456789))
    assert sample.mean() == pytest.approx(0.0, abs=0.2)
    assert sample.var(ddof=1) == pytest.approx(1.0, abs=0.2)
    assert sample.size == 500


def test_random_samples_non_zero_mean() -> None:
    """UtilsSuite.scala, test "RandomUtils List of Random Samples (Non-zero Mean)"."""
    sample = normal(mean=10.0, stdev=3.0, num_samples=1000, rng=JavaRandom(123456789))
    assert sample.mean() == pytest.approx(10.0, abs=0.2)
    assert sample.std(ddof=1) == pytest.approx(3.0, abs=0.2)
    assert sample.size == 1000


def test_java_random_matches_the_jvm() -> None:
    """Not in the suite: the first draws of a fresh `new java.util.Random(42)` on a JVM."""
    assert JavaRandom(42).next_double() == 0.7275636800328681
    assert JavaRandom(42).next_gaussian() == pytest.approx(1.1419053154730547, abs=1e-15)


def test_random_sample_zero_variance() -> None:
    """UtilsSuite.scala, test "RandomUtils Random Sample (Zero Variance)": exactly the mean, for any draw."""
    for seed in range(20):
        assert normal(mean=0.0, stdev=0.0, num_samples=1, rng=JavaRandom(seed))[0] == 0.0
        assert normal(mean=7.5, stdev=0.0, num_samples=3, rng=JavaRandom(seed)).tolist() == [7.5] * 3
