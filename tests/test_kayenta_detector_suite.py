"""Port of Kayenta's `kayenta-judge/src/test/scala/com/netflix/kayenta/judge/DetectorSuite.scala`."""

import pytest

from analyzer.stats.kayenta_transforms import IQRDetector, KSigmaDetector


def test_ksigma_detection() -> None:
    """DetectorSuite.scala, test "KSigma Detection"."""
    data = [1.0, 1.0, 1.0, 1.0, 1.0, 20.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    truth = [False, False, False, False, False, True, False, False, False, False, False]
    assert KSigmaDetector(k=3.0).detect(data).tolist() == truth


def test_ksigma_two_sided() -> None:
    """DetectorSuite.scala, test "KSigma Two Sided"."""
    data = [1.0, 1.0, 1.0, 5.0, -1.0, -1.0, -1.0, -5.0]
    truth = [False, False, False, True, False, False, False, True]
    assert KSigmaDetector(1.0).detect(data).tolist() == truth


def test_iqr_detection() -> None:
    """DetectorSuite.scala, test "IQR Detection"."""
    data = [21.0, 23.0, 24.0, 25.0, 50.0, 29.0, 23.0, 21.0]
    truth = [False, False, False, False, True, False, False, False]
    assert IQRDetector(factor=1.5).detect(data).tolist() == truth


def test_iqr_detect_two_sided() -> None:
    """DetectorSuite.scala, test "IQR Detect Two Sided"."""
    data = [1.0, 1.0, 1.0, 5.0, -1.0, -1.0, -1.0, -5.0]
    truth = [False, False, False, True, False, False, False, True]
    assert IQRDetector(factor=1.5).detect(data).tolist() == truth


def test_iqr_empty_data() -> None:
    """DetectorSuite.scala, test "IQR Empty Data"."""
    assert IQRDetector(factor=1.5).detect([]).tolist() == []


NIST = [
    30, 171, 184, 201, 212, 250, 265, 270, 272, 289, 305, 306, 322, 322, 336, 346,
    351, 370, 390, 404, 409, 411, 436, 437, 439, 441, 444, 448, 451, 453, 470, 480,
    482, 487, 494, 495, 499, 503, 514, 521, 522, 527, 548, 550, 559, 560, 570, 572,
    574, 578, 585, 592, 592, 607, 616, 618, 621, 629, 637, 638, 640, 656, 668, 707,
    709, 719, 737, 739, 752, 758, 766, 792, 792, 794, 802, 818, 830, 832, 843, 858,
    860, 869, 918, 925, 953, 991, 1000, 1005, 1068, 1441,
]


def test_iqr_nist() -> None:
    """DetectorSuite.scala, test "IQR NIST Test"."""
    truth = [False] * (len(NIST) - 1) + [True]
    assert IQRDetector(factor=1.5).detect([float(v) for v in NIST]).tolist() == truth


def test_reduced_sensitivity_widens_the_fences_to_p1_p99() -> None:
    """Not in the suite: the judge's `reduceSensitivity = true` keeps points inside P1..P99.

    With 100 points P99 sits between the two largest, so a lone spike above it still goes, but a point
    that only the IQR fence would catch (inside P1..P99) stays.
    """
    data = [10.0] * 50 + [11.0] * 46 + [30.0, 31.0, 32.0, 1000.0]
    plain = IQRDetector(factor=1.5).detect(data)
    reduced = IQRDetector(factor=1.5, reduce_sensitivity=True).detect(data)
    assert plain[-4:].tolist() == [True, True, True, True]
    assert reduced[-4:].tolist() == [False, False, False, True]


def test_detectors_refuse_non_positive_factors() -> None:
    """Not in the suite: Kayenta's `require(factor > 0.0)` / `require(k > 0.0)`."""
    with pytest.raises(ValueError, match="factor must be greater than zero"):
        IQRDetector(factor=0.0)
    with pytest.raises(ValueError, match="k must be greater than zero"):
        KSigmaDetector(k=-1.0)
