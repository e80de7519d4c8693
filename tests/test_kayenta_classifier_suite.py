"""Port of Kayenta's `kayenta-judge/src/test/scala/com/netflix/kayenta/judge/ClassifierSuite.scala`.

Kayenta's classify(control, experiment, direction, nanStrategy, isCriticalMetric) maps to
MannWhitneyClassifier(...).classify(control, experiment, direction, nan_strategy, is_critical_metric).
The 30-point and zero-inflated arrays live in tests/fixtures/kayenta (copied from the suite).
"""

import math

import pytest

from analyzer.stats.kayenta_classifiers import (
    HIGH,
    LOW,
    NODATA,
    PASS,
    MannWhitneyClassifier,
    MeanInequalityClassifier,
)
from tests.kayenta_fixtures import load

EXP_10, CTL_10 = load("classifier_experiment_10"), load("classifier_control_10")
EXP_20, CTL_20 = load("classifier_experiment_20"), load("classifier_control_20")
ZI_EXP, ZI_CTL = load("zero_inflated_experiment"), load("zero_inflated_control")

CLES_PASS_EXP = [
    0.00000000e+00, 0.00000000e+00, 1.46580998e-04, 0.00000000e+00, 0.00000000e+00, 0.00000000e+00,
    7.94701987e-05, 0.00000000e+00, 0.00000000e+00, 0.00000000e+00, 2.68889486e-05, 0.00000000e+00,
    0.00000000e+00, 2.64935753e-05, 0.00000000e+00, 0.00000000e+00, 0.00000000e+00, 2.61608895e-05,
    1.27824931e-04, 0.00000000e+00, 0.00000000e+00, 0.00000000e+00, 2.54511211e-05, 2.58665287e-05,
    7.63339355e-05, 0.00000000e+00, 2.54239443e-05, 0.00000000e+00, 0.00000000e+00, 0.00000000e+00,
    2.61001201e-05, 5.20101940e-05, 0.00000000e+00, 2.64452319e-05, 5.27551370e-05, 7.83719533e-05,
    5.19467027e-05, 2.58344528e-05, 2.58899676e-05, 0.00000000e+00, 2.59497613e-05, 2.57938043e-05,
    7.78553448e-05, 2.60593110e-05, 2.61001201e-05, 0.00000000e+00, 0.00000000e+00, 2.59349551e-05,
    2.60559160e-05, 0.00000000e+00, 0.00000000e+00, 0.00000000e+00, 0.00000000e+00, 0.00000000e+00,
    0.00000000e+00, 2.58819267e-05, 0.00000000e+00, 2.58825965e-05, 2.57572635e-05, 2.56877906e-05,
]
CLES_PASS_CTL = [
    0.00000000e+00, 0.00000000e+00, 0.00000000e+00, 0.00000000e+00, 0.00000000e+00, 0.00000000e+00,
    0.00000000e+00, 0.00000000e+00, 2.91528191e-05, 0.00000000e+00, 0.00000000e+00, 0.00000000e+00,
    2.98284862e-05, 5.99916012e-05, 0.00000000e+00, 5.92276712e-05, 0.00000000e+00, 2.98053709e-05,
    0.00000000e+00, 2.97309350e-05, 5.92153960e-05, 0.00000000e+00, 0.00000000e+00, 0.00000000e+00,
    2.92800047e-05, 0.00000000e+00, 2.94550810e-05, 0.00000000e+00, 0.00000000e+00, 0.00000000e+00,
    5.83958656e-05, 0.00000000e+00, 0.00000000e+00, 0.00000000e+00, 0.00000000e+00, 0.00000000e+00,
    0.00000000e+00, 0.00000000e+00, 0.00000000e+00, 0.00000000e+00, 2.88600289e-05, 2.90334756e-05,
    2.91740817e-05, 0.00000000e+00, 0.00000000e+00, 0.00000000e+00, 0.00000000e+00, 0.00000000e+00,
    0.00000000e+00, 2.92765758e-05, 0.00000000e+00, 0.00000000e+00, 0.00000000e+00, 0.00000000e+00,
    0.00000000e+00, 2.94637596e-05, 5.89136326e-05, 0.00000000e+00, 0.00000000e+00, 0.00000000e+00,
]
CLES_HIGH_EXP = [
    0.00689808, 0.00568664, 0.00680876, 0.00642045, 0.00561825, 0.00472294, 0.00398378, 0.00392403,
    0.00421201, 0.0047529, 0.00460853, 0.00439888, 0.00561875, 0.01998866, 0.0124369, 0.00624391,
    0.00444361, 0.00442059, 0.00372095, 0.00540736, 0.00715402, 0.00425974, 0.00414409, 0.01172436,
    0.0125959, 0.00371891, 0.00429855, 0.00369876, 0.00325709, 0.00415943, 0.00371754, 0.00445212,
    0.00521721, 0.00443938, 0.00380859, 0.01602997, 0.00788885, 0.0038155, 0.00326921, 0.00336928,
    0.00365917, 0.00333869, 0.00427639, 0.00355911, 0.00381224, 0.00360057, 0.00349305, 0.00401164,
    0.00351947, 0.00356299, 0.003407, 0.00414397, 0.00393346, 0.00413318, 0.00359041, 0.00366314,
    0.00309383, 0.00383733, 0.00363324, 0.00280674,
]
CLES_HIGH_CTL = [
    0.00081956, 0.00239282, 0.00133685, 0.00094917, 0.00029518, 0.00035344, 0.00048194, 0.00034893,
    0.0003202, 0.00079814, 0.00090881, 0.00072599, 0.00037819, 0.00038286, 0.00057604, 0.00064821,
    0.00032194, 0.0002245, 0.00025202, 0.00071997, 0.00022721, 0.00042578, 0.00042496, 0.00045613,
    0.00037072, 0.0003317, 0.00032889, 0.00032749, 0.00036093, 0.00029285, 0.00038401, 0.00044467,
    0.00071086, 0.00036692, 0.00052079, 0.00074974, 0.00128791, 0.00062046, 0.00086345, 0.00118563,
    0.00103379, 0.00028913, 0.00057628, 0.00057943, 0.00048735, 0.00029409, 0.0002005, 0.00016612,
    0.00089312, 0.00059367, 0.00061706, 0.00163313, 0.00097784, 0.00029305, 0.00058839, 0.00085212,
    0.00048298, 0.00035546, 0.00025866, 0.00038767,
]
CLES_LOW_EXP = [
    24.24693907, 26.13330099, 22.50056744, 24.36646841, 23.19935673, 19.43801304, 20.99654102, 18.90793651,
    21.31949881, 21.83528381, 21.64211206, 23.13365968, 21.09163134, 19.45540615, 20.74783158, 22.25527831,
    19.82051791, 20.9865487, 19.94450026, 23.2904056, 18.18408424, 22.13843542, 19.42896044, 19.84140464,
    23.91557662, 21.00981557, 21.8594633, 23.11630163, 22.95700392, 17.80045135,
]
CLES_LOW_CTL = [
    25.09626848, 26.15032198, 24.88431438, 24.18870163, 22.14684987, 28.01743443, 21.29910501, 27.24688773,
    28.64187535, 27.03504445, 24.67888311, 22.35137878, 27.41640397, 26.00225548, 23.02118534, 25.99647292,
    22.77446912, 25.56704719, 25.57025827, 21.2721602, 23.12987357, 24.59111604, 27.48865016, 27.21967755,
    23.5951111, 22.5429607, 25.83015564, 23.31965305, 24.3911644, 25.11468194,
]
HIGH_5_EXP, HIGH_5_CTL = [20.0, 22.0, 21.0, 25.0, 30.0], [1.0, 2.2, 1.1, 2.5, 3.0]


def mw(**kw: object) -> MannWhitneyClassifier:
    """Most tests build `new MannWhitneyClassifier(tolerance = 0.10, confLevel = 0.95, ...)`."""
    return MannWhitneyClassifier(**{"tolerance": 0.10, "conf_level": 0.95, **kw})  # type: ignore[arg-type]


def test_pass_metric() -> None:
    """ClassifierSuite.scala, test "Mann-Whitney Classifier Test: Pass Metric"."""
    assert mw().classify(CTL_10, EXP_10, "either").classification == PASS


def test_high_metric() -> None:
    """ClassifierSuite.scala, test "Mann-Whitney Classifier Test: High Metric"."""
    assert mw().classify(CTL_10, EXP_20, "either").classification == HIGH


def test_low_metric() -> None:
    """ClassifierSuite.scala, test "Mann-Whitney Classifier Test: Low Metric"."""
    assert mw().classify(CTL_20, EXP_10, "either").classification == LOW


def test_directional_increase() -> None:
    """ClassifierSuite.scala, test "Mann-Whitney Classifier Directional Test: Increase"."""
    assert mw().classify(CTL_20, EXP_10, "increase").classification == PASS


def test_directional_decrease() -> None:
    """ClassifierSuite.scala, test "Mann-Whitney Classifier Directional Test: Decrease"."""
    assert mw().classify(CTL_10, EXP_20, "decrease").classification == PASS


def test_directional_high_metric() -> None:
    """ClassifierSuite.scala, test "Mann-Whitney Classifier Directional Test: High Metric"."""
    result = mw().classify(CTL_10, EXP_20, "increase")
    assert result.classification == HIGH
    assert not result.critical


def test_directional_low_metric() -> None:
    """ClassifierSuite.scala, test "Mann-Whitney Classifier Directional Test: Low Metric"."""
    assert mw().classify(CTL_20, EXP_10, "decrease").classification == LOW


def test_high_metric_large_input() -> None:
    """ClassifierSuite.scala, test "Mann-Whitney Classifier Test: High Metric (Large Input)".

    Zero-inflated error rates: Brent (tolerance 1e-4) stops with L ≈ 3.5e-5 > 0.10·|Ĥ| ≈ 2.6e-6, so High.
    The exact jumps of Z(μ) are L = U = Ĥ = 0 (most pairwise differences are 0), so L > 0.10·|Ĥ| fails: Pass.
    """
    result = mw().classify(ZI_CTL, ZI_EXP, "either")
    assert result.classification == HIGH
    assert not result.critical
    assert result.lower == pytest.approx(3.521755377702165e-5, abs=1e-12)


def test_mean_ratio_effect_size_high() -> None:
    """ClassifierSuite.scala, test "Mann-Whitney Classifier Test - Mean Ratio Effect Size: High"."""
    result = mw(effect_size_thresholds=(0.8, 1.2)).classify(HIGH_5_CTL, HIGH_5_EXP, "either")
    assert result.classification == HIGH


def test_mean_ratio_effect_size_low() -> None:
    """ClassifierSuite.scala, test "Mann-Whitney Classifier Test - Mean Ratio Effect Size: Low"."""
    result = mw(effect_size_thresholds=(0.8, 1.2)).classify(CTL_20, EXP_10, "decrease")
    assert result.classification == LOW


def test_mean_ratio_effect_size_pass() -> None:
    """ClassifierSuite.scala, test "Mann-Whitney Classifier Test - Mean Ratio Effect Size: Pass"."""
    result = mw(effect_size_thresholds=(0.5, 1.0)).classify(
        [20.0, 22.0, 21.0, 25.0, 30.0], [10.0, 12.2, 10.1, 12.5, 23.0], "either", "remove")
    assert result.classification == PASS


def test_mean_ratio_effect_size_pass_large_input() -> None:
    """ClassifierSuite.scala, test "Mann-Whitney Classifier Test - Mean Ratio Effect Size: Pass (Large Input)"."""
    result = mw(effect_size_thresholds=(1.0, 5.0)).classify(ZI_CTL, ZI_EXP, "either")
    assert result.classification == PASS


def test_cles_effect_size_pass() -> None:
    """ClassifierSuite.scala, test "Mann-Whitney Classifier Test - CLES Effect Size: Pass"."""
    c = MannWhitneyClassifier(tolerance=0.20, conf_level=0.98, effect_size_thresholds=(0.5, 0.8),
                              effect_size_measure="cles")
    assert c.classify(CLES_PASS_CTL, CLES_PASS_EXP, "either").classification == PASS


def test_cles_effect_size_high() -> None:
    """ClassifierSuite.scala, test "Mann-Whitney Classifier Test - CLES Effect Size: High"."""
    c = MannWhitneyClassifier(tolerance=0.20, conf_level=0.98, effect_size_thresholds=(0.2, 0.8),
                              effect_size_measure="cles")
    assert c.classify(CLES_HIGH_CTL, CLES_HIGH_EXP, "either").classification == HIGH


def test_cles_effect_size_low() -> None:
    """ClassifierSuite.scala, test "Mann-Whitney Classifier Test - CLES Effect Size: Low"."""
    c = MannWhitneyClassifier(tolerance=0.20, conf_level=0.98, effect_size_thresholds=(0.2, 0.8),
                              effect_size_measure="cles")
    assert c.classify(CLES_LOW_CTL, CLES_LOW_EXP, "either").classification == LOW


def test_critical_effect_size_critical_high() -> None:
    """ClassifierSuite.scala, test "Mann-Whitney Classifier Test - Critical Effect Size: Critical High"."""
    result = mw(critical_thresholds=(1.0, 1.2)).classify(HIGH_5_CTL, HIGH_5_EXP, "either", is_critical_metric=True)
    assert (result.classification, result.critical) == (HIGH, True)


def test_critical_effect_size_critical_low() -> None:
    """ClassifierSuite.scala, test "Mann-Whitney Classifier Test - Critical Effect Size: Critical Low"."""
    result = mw(critical_thresholds=(1.2, 1.0)).classify(
        [10.0, 20.2, 10.1, 20.5, 30.0], [2.0, 2.0, 2.0, 2.0, 3.0], "either", is_critical_metric=True)
    assert (result.classification, result.critical) == (LOW, True)


def test_critical_effect_size_high() -> None:
    """ClassifierSuite.scala, test "Mann-Whitney Classifier Test - Critical Effect Size: High"."""
    result = mw(effect_size_thresholds=(1.0, 5.0), critical_thresholds=(1.0, 13.0)).classify(
        HIGH_5_CTL, HIGH_5_EXP, "either", is_critical_metric=True)
    assert (result.classification, result.critical) == (HIGH, False)


def test_critical_effect_size_pass() -> None:
    """ClassifierSuite.scala, test "Mann-Whitney Classifier Test - Critical Effect Size: Pass"."""
    result = mw(effect_size_thresholds=(1.0, 13.0), critical_thresholds=(1.0, 15.0)).classify(
        HIGH_5_CTL, HIGH_5_EXP, "either", is_critical_metric=True)
    assert (result.classification, result.critical) == (PASS, False)


def test_critical_effect_size_critical_high_default_thresholds() -> None:
    """ClassifierSuite.scala, test "Mann-Whitney Classifier Test - Critical Effect Size: Critical High (Default
    Thresholds)"."""
    result = mw().classify(HIGH_5_CTL, HIGH_5_EXP, "either", is_critical_metric=True)
    assert (result.classification, result.critical) == (HIGH, True)


def test_tied_observations() -> None:
    """ClassifierSuite.scala, test "Mann-Whitney Tied Observations"."""
    assert mw().classify([1.0, 1.0], [1.0, 1.0, 1.0], "decrease").classification == PASS


def test_identical_populations() -> None:
    """ClassifierSuite.scala, test "Mann-Whitney Identical Populations"."""
    result = mw().classify([5.0, 4.0, 3.0, 2.0, 1.0], [1.0, 2.0, 3.0, 4.0, 5.0], "decrease")
    assert (result.classification, result.deviation) == (PASS, 1.0)


def test_leading_zero_identical_population() -> None:
    """ClassifierSuite.scala, test "Mann-Whitney Leading Zero Identical Population"."""
    assert mw().classify([1.0] * 5, [0.0, 1.0, 1.0, 1.0, 1.0], "decrease").classification == PASS


def test_missing_experiment_data() -> None:
    """ClassifierSuite.scala, test "Mann-Whitney Missing Experiment Data"."""
    result = mw().classify([1.0, 2.0, 3.0, 4.0, 5.0], [], "decrease")
    assert (result.classification, result.deviation) == (NODATA, 1.0)


def test_missing_experiment_data_critical_metric() -> None:
    """ClassifierSuite.scala, test "Mann-Whitney Missing Experiment Data: Critical Metric"."""
    result = mw().classify([1.0, 2.0, 3.0, 4.0, 5.0], [], "decrease", is_critical_metric=True)
    assert (result.classification, result.critical) == (NODATA, True)


def test_missing_experiment_data_with_nan_replacement() -> None:
    """ClassifierSuite.scala, test "Mann-Whitney Missing Experiment Data with NaN Replacement"."""
    assert mw().classify([1.0, 2.0, 3.0, 4.0, 5.0], [], "decrease", "replace").classification == PASS


def test_missing_data_reason_string() -> None:
    """ClassifierSuite.scala, test "Mann-Whitney Missing Data: Reason String"."""
    result = mw().classify([], [], "decrease", is_critical_metric=True)
    assert result.reason


def test_majority_tied_observations() -> None:
    """ClassifierSuite.scala, test "Mann-Whitney Majority Tied Observations"."""
    assert mw().classify([1.0] * 5, [1.0, 1.0, 1.0, 1.0, 10.0], "either").classification == PASS


def test_tied_ranks() -> None:
    """ClassifierSuite.scala, test "Mann-Whitney Tied Ranks" (two constants: tie-breaking noise)."""
    assert mw().classify([1.0] * 5, [10.0] * 5, "either").classification == HIGH


def test_tied_ranks_with_zeros() -> None:
    """ClassifierSuite.scala, test "Mann-Whitney Tied Ranks With Zeros" (zero-variance noise on the zeros)."""
    assert mw().classify([0.0] * 5, [10.0] * 5, "either").classification == HIGH


def test_zero_mean_high_metric_with_effect_size() -> None:
    """ClassifierSuite.scala, test "Mann-Whitney Zero Mean: High Metric with Effect Size"."""
    result = mw(effect_size_thresholds=(0.8, 1.2)).classify([0.0] * 5, [54.9, 54.5, 55.1, 55.6, 57.4], "either")
    assert result.classification == HIGH
    assert math.isnan(result.deviation)


def test_zero_mean_low_metric_with_effect_size() -> None:
    """ClassifierSuite.scala, test "Mann-Whitney Zero Mean: Low Metric with Effect Size"."""
    result = mw(effect_size_thresholds=(0.8, 1.2)).classify([54.9, 54.5, 55.1, 55.6, 57.4], [0.0] * 5, "either")
    assert result.classification == LOW
    assert math.isnan(result.deviation)


def test_zero_mean_critical_metric() -> None:
    """ClassifierSuite.scala, test "Mann-Whitney Zero Mean: Critical Metric"."""
    experiment = [0.05000000074505806, 0.05000000074505806, 0.01666666753590107, 0.01666666753590107,
                  0.01666666753590107, 0.05000000074505806, 0.03333333507180214, 0.05000000260770321,
                  0.05000000260770321, 0.13333333656191826]
    result = mw(critical_thresholds=(0.8, 1.2)).classify([0.0] * 10, experiment, "either", "replace",
                                                         is_critical_metric=True)
    assert (result.classification, result.critical) == (HIGH, True)


def test_zero_mean_pass_metric() -> None:
    """ClassifierSuite.scala, test "Mann-Whitney Zero Mean: Pass Metric"."""
    result = mw(effect_size_thresholds=(0.8, 1.2)).classify([0.0] * 5, [0.0] * 5, "either")
    assert (result.classification, result.deviation) == (PASS, 1.0)


def test_mean_inequality_high_metric() -> None:
    """ClassifierSuite.scala, test "Mean Inequality Classifier Test: High Metric"."""
    result = MeanInequalityClassifier().classify([1.0, 2.0, 3.0, 4.0, 5.0], [10.0, 20.0, 30.0, 40.0, 50.0], "either")
    assert result.classification == HIGH


def test_mean_inequality_low_metric() -> None:
    """ClassifierSuite.scala, test "Mean Inequality Classifier Test: Low Metric"."""
    result = MeanInequalityClassifier().classify([10.0, 20.0, 30.0, 40.0, 50.0], [1.0, 2.0, 3.0, 4.0, 5.0], "either")
    assert result.classification == LOW


def test_mean_inequality_pass_metric() -> None:
    """ClassifierSuite.scala, test "Mean Inequality Classifier Test: Pass Metric"."""
    result = MeanInequalityClassifier().classify([1.0, 2.0, 3.0, 4.0, 5.0], [1.0, 2.0, 3.0, 4.0, 5.0], "either")
    assert result.classification == PASS
