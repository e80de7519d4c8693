"""Port of Kayenta's `kayenta-mannwhitney/src/test/scala/com/netflix/kayenta/mannwhitney/MannWhitneySuite.scala`.

Kayenta asserts with `assertEquals(expected, actual, E)`, E = 1e-6 (1e-4 for two estimates); so do we.
"""

import numpy as np
import pytest
from scipy import stats

from analyzer.stats.kayenta_mw import WilcoxonDiff, brent_solve, mann_whitney_u_test, wilcoxon_diff
from tests.kayenta_fixtures import load

E = 0.000001

R_CONTROL = [
    1.5, 6.0, 5.0, 2.5, 2.5, 2.0, 2.0, 3.5, 3.0, 3.0, 3.0, 2.0, 3.0, 8.0, 4.0, 2.5, 3.0, 2.5, 2.5, 2.0,
    2.5, 2.0, 2.0, 2.5, 3.5, 3.0, 1.5, 5.0, 2.5, 5.5, 2.0, 2.5, 3.5, 2.0, 2.5, 4.0, 2.0, 2.0, 2.0, 2.0,
    5.5, 4.5, 4.0, 3.0, 3.0, 3.5, 2.5, 3.0, 2.5, 4.0, 6.0, 2.0, 5.0, 6.0, 3.5, 3.0, 54.5, 3.0, 5.0, 6.0,
    3.5, 4.5, 2.5, 2.0, 6.0, 5.0, 2.5, 3.5, 2.0, 3.0, 2.5, 3.5, 3.5, 2.5, 3.0, 4.5, 3.0, 15.5, 5.0, 2.5,
    3.0, 4.0, 3.5, 4.0, 4.0, 2.0, 4.5, 2.5, 4.0, 3.0,
]
R_EXPERIMENT = [
    2.5, 2.5, 2.0, 2.5, 3.5, 2.0, 3.5, 1.5, 3.0, 3.0, 2.5, 3.5, 2.0, 2.5, 2.0, 2.0, 5.0, 3.0, 2.0, 1.5,
    2.0, 4.0, 3.0, 2.5, 3.0, 2.0, 2.0, 2.0, 2.5, 3.5, 1.5, 1.5, 3.5, 2.0, 2.5, 2.5, 3.0, 3.5, 2.5, 6.5,
    2.5, 4.0, 2.5, 3.0, 2.5, 6.5, 2.5, 3.0, 1.5, 2.0, 2.5, 3.0, 7.5, 1.5, 2.0, 4.0, 2.5, 2.0, 2.5, 3.5,
    4.0, 2.5, 3.0, 2.5, 2.0, 3.5, 3.0, 16.5, 3.0, 3.0, 7.0, 4.5, 5.0, 2.0, 3.5, 6.0, 1.5, 3.0, 2.5, 4.0,
    3.0, 1.5, 5.0, 3.0, 2.5, 5.5, 3.0, 1.5, 2.5, 6.0,
]
R_LARGE_EXPERIMENT = [
    1.5, 2.0, 5.0, 1.5, 1.5, 8.5, 1.0, 1.0, 2.0, 1.0, 1.5, 0.5, 2.0, 1.5, 2.0, 1.5, 1.0, 2.5, 1.5, 1.5,
    2.0, 1.5, 1.5, 1.5, 2.0, 2.0, 1.0, 5.5, 1.5, 2.0, 1.5, 1.5, 1.0, 2.5, 1.0, 2.0, 1.5, 1.5, 2.0, 2.0,
    1.5, 1.5, 1.0, 1.0, 2.0, 0.5, 1.5, 0.5, 3.5, 1.5, 3.0, 19.0, 0.5, 1.5, 0.5, 1.5, 2.0, 1.5, 1.5, 1.5,
    1.5, 2.0, 1.5, 2.0, 2.0, 1.5, 1.0, 1.5, 1.0, 2.0, 1.0, 2.0, 1.5, 1.5, 3.0, 2.0, 1.5, 1.5, 0.5, 2.0,
    1.5, 1.0, 2.0, 1.0, 1.0, 2.0, 1.0, 2.0, 1.5, 1.0, 1.0, 2.0, 1.5, 1.5, 1.5, 0.5, 1.5, 1.5, 0.5, 1.0,
    1.5, 1.5, 1.5, 1.0, 2.0, 2.0, 2.0, 1.5, 1.0, 1.5, 1.0, 1.0, 1.5, 3.5, 2.0, 1.5, 1.0, 2.0, 1.5, 5.5,
    0.5, 2.0, 3.5, 1.5, 1.0, 2.0, 0.5, 2.5, 1.0, 1.5, 0.5, 2.0, 2.0, 1.0, 0.5, 1.5, 1.0, 1.5, 0.5, 0.5,
    1.0, 1.5, 1.0, 1.5, 0.5, 1.5, 1.0, 1.0, 0.5, 1.0, 0.5, 4.0, 1.0, 1.5, 2.0, 5.5, 1.5, 0.5, 2.0, 1.0,
    1.5, 1.0, 1.5, 1.5, 1.0, 1.5, 1.5, 1.5, 1.5, 1.5, 1.5, 2.0, 0.5, 1.5, 1.0, 2.0, 1.0, 1.0, 0.5, 1.0,
]
R_LARGE_CONTROL = [
    1.5, 1.5, 1.0, 2.0, 1.5, 1.5, 1.5, 2.0, 1.0, 1.0, 2.0, 1.5, 1.5, 1.0, 1.5, 1.5, 1.5, 1.5, 1.5, 2.0,
    1.0, 1.5, 3.0, 2.0, 1.0, 1.5, 1.5, 1.5, 2.0, 1.5, 1.0, 1.0, 1.5, 2.5, 2.0, 0.0, 1.0, 2.0, 2.0, 1.5,
    3.0, 2.0, 1.0, 2.5, 0.5, 1.5, 0.5, 2.5, 2.0, 1.5, 1.5, 2.0, 1.0, 4.5, 2.5, 0.5, 2.5, 1.5, 1.5, 1.0,
    2.0, 1.0, 2.5, 1.5, 2.0, 1.5, 3.0, 1.5, 1.5, 1.5, 1.5, 2.0, 1.0, 2.5, 1.0, 1.5, 2.5, 1.5, 2.5, 2.0,
    1.5, 1.5, 1.5, 2.5, 1.0, 7.5, 1.5, 3.0, 5.5, 1.0, 1.5, 2.0, 1.0, 1.5, 2.5, 2.5, 1.0, 1.0, 2.5, 1.5,
    1.5, 3.0, 4.0, 1.0, 1.5, 2.0, 1.5, 1.5, 1.5, 2.5, 1.5, 3.5, 2.5, 1.5, 2.0, 1.0, 4.0, 1.5, 1.0, 1.5,
    2.5, 2.5, 2.0, 2.5, 1.5, 1.5, 2.0, 1.0, 1.5, 2.0, 1.5, 1.0, 2.5, 1.5, 1.5, 2.0, 2.0, 1.0, 1.5, 2.5,
    0.5, 2.0, 2.5, 2.0, 1.0, 2.0, 0.5, 1.5, 1.0, 2.5, 1.0, 1.5, 1.0, 7.0, 1.0, 3.5, 1.5, 2.0, 1.5, 1.5,
    2.0, 3.0, 1.5, 1.5, 2.0, 1.5, 2.0, 1.5, 4.0, 2.0, 1.5, 1.5, 1.5, 1.5, 1.5, 0.5, 2.0, 1.0, 1.5, 0.5,
]


def test_wilcoxon_diff_function() -> None:
    """MannWhitneySuite.scala, test "Wilcoxon Diff Function"."""
    x, y = load("mw_problem_experiment"), load("mw_problem_control")
    assert wilcoxon_diff(0, 0, x, y) == pytest.approx(-1.229416, abs=E)
    assert wilcoxon_diff(5, 0, x, y) == pytest.approx(-35.80606, abs=E)


def test_z_quant() -> None:
    """MannWhitneySuite.scala, test "Test zQuant"."""
    assert stats.norm.ppf(0.02 / 2) == pytest.approx(-2.326348, abs=E)


def test_confidence_interval_and_estimate() -> None:
    """MannWhitneySuite.scala, test "Mann-Whitney Confidence Interval & Estimate"."""
    result = mann_whitney_u_test([10.0, 20.0, 30.0, 40.0], [1.0, 2.0, 3.0, 4.0])
    assert result.confidence_interval[0] == pytest.approx(6.0, abs=E)
    assert result.confidence_interval[1] == pytest.approx(39.0, abs=E)
    assert result.estimate == pytest.approx(22.5, abs=E)


def test_confidence_interval_and_estimate_problem_case() -> None:
    """MannWhitneySuite.scala, test "Mann-Whitney Confidence Interval & Estimate: Problem Case".

    The whole μ range (~5e-5) is narrower than Brent's 1e-4 tolerance: the estimate is the upper bound.
    """
    result = mann_whitney_u_test(load("mw_problem_experiment"), load("mw_problem_control"), confidence_level=0.98)
    assert result.confidence_interval[0] == pytest.approx(-1.4808028936386108e-5, abs=E)
    assert result.confidence_interval[1] == pytest.approx(1.808255910873413e-5, abs=E)
    assert result.estimate == pytest.approx(1.808255910873413e-5, abs=E)


def test_tie_out_with_r() -> None:
    """MannWhitneySuite.scala, test "Mann-Whitney Confidence Interval & Estimate: Tie out with R Version"."""
    result = mann_whitney_u_test(R_EXPERIMENT, R_CONTROL)
    assert result.confidence_interval[0] == pytest.approx(-0.500002521696696, abs=E)
    assert result.confidence_interval[1] == pytest.approx(-3.486287505871302e-5, abs=E)
    assert result.estimate == pytest.approx(-0.4999393907180323, abs=0.0001)


def test_tie_out_with_r_large() -> None:
    """MannWhitneySuite.scala, test "Mann-Whitney Confidence Interval & Estimate: Tie out with R Version (Large)"."""
    result = mann_whitney_u_test(R_LARGE_EXPERIMENT, R_LARGE_CONTROL, confidence_level=0.98)
    assert result.confidence_interval[0] == pytest.approx(-0.4999173250549087, abs=E)
    assert result.confidence_interval[1] == pytest.approx(-6.912685789769486e-6, abs=E)
    assert result.estimate == pytest.approx(-3.45044082729315e-5, abs=0.0001)


def test_intermediate_values() -> None:
    """MannWhitneySuite.scala, test "Mann-Whitney Intermediate Values / Variables".

    R's own intermediate values; note the lower bound exceeds the upper one: Brent stops within 1e-4.
    """
    x, y = load("zero_inflated_experiment"), load("zero_inflated_control")
    alpha = 1.0 - 0.95
    mu_min, mu_max = float(x.min() - y.max()), float(x.max() - y.min())
    zq_lower = float(stats.norm.ppf(alpha / 2)) * -1
    zq_upper = float(stats.norm.ppf(alpha / 2))
    f_lower0, f_upper0 = wilcoxon_diff(mu_min, 0, x, y), wilcoxon_diff(mu_max, 0, x, y)
    f_lower1, f_upper1 = wilcoxon_diff(mu_min, zq_lower, x, y), wilcoxon_diff(mu_max, zq_lower, x, y)
    f_lower2, f_upper2 = wilcoxon_diff(mu_min, zq_upper, x, y), wilcoxon_diff(mu_max, zq_upper, x, y)

    def wrapper(zq: float):  # type: ignore[no-untyped-def]
        return lambda value: wilcoxon_diff(value, zq, x, y)

    ci_lower = brent_solve(mu_min, mu_max, f_lower1, f_upper1, wrapper(zq_lower))
    ci_upper = brent_solve(mu_min, mu_max, f_lower2, f_upper2, wrapper(zq_upper))
    estimate = brent_solve(mu_min, mu_max, f_lower0, f_upper0, wrapper(0))

    assert mu_min == pytest.approx(-3.124999999999986, abs=E)
    assert mu_max == pytest.approx(5.555555555555557, abs=E)
    assert zq_lower == pytest.approx(1.9599639845400536, abs=E)
    assert zq_upper == pytest.approx(-1.9599639845400536, abs=E)
    assert f_lower1 == pytest.approx(17.090968923762254, abs=E)
    assert f_upper1 == pytest.approx(-20.997687930433106, abs=E)
    assert f_lower2 == pytest.approx(21.01089689284236, abs=E)
    assert f_upper2 == pytest.approx(-17.077759961353, abs=E)
    assert ci_lower == pytest.approx(3.521755377702165e-5, abs=E)
    assert ci_upper == pytest.approx(2.02456461662334e-5, abs=E)
    assert estimate == pytest.approx(2.6279243045155653e-5, abs=E)


def test_all_tied_observations_raise() -> None:
    """Not in the suite: Kayenta's wilcoxonDiff throws when σ = 0; the judge labels that Error."""
    with pytest.raises(ValueError, match="all observations are tied"):
        wilcoxon_diff(0.0, 0.0, np.ones(3), np.ones(2))


@pytest.mark.parametrize("seed", range(6))
def test_fast_wilcoxon_diff_is_kayentas_number_bit_for_bit(seed: int) -> None:
    """Not in the suite: the counting shortcut Brent uses equals the ranked computation exactly, everywhere."""
    rng = np.random.default_rng(seed)
    m, n = (int(v) for v in rng.integers(2, 60, 2))
    decimals = int(rng.integers(0, 4))  # rounding makes within- and cross-sample ties
    x = np.round(rng.gamma(2.0, 1.0, m) * 10 ** -int(rng.integers(0, 6)), decimals + 5)
    y = np.round(rng.gamma(2.0, 1.0, n) * 10 ** -int(rng.integers(0, 6)), decimals + 5)
    fast = WilcoxonDiff(x, y)
    pairs = np.unique((x[:, None] - y[None, :]).ravel())
    mus = np.concatenate((pairs, (pairs[1:] + pairs[:-1]) / 2, np.nextafter(pairs, np.inf),
                          [x.min() - y.max(), x.max() - y.min()], rng.uniform(pairs[0], pairs[-1], 50)))
    for mu in mus:
        for q in (0.0, 2.3263478740408408, -2.3263478740408408):
            try:
                want: float | type = wilcoxon_diff(float(mu), q, x, y)
            except ValueError:
                want = ValueError
            try:
                got: float | type = fast(float(mu), q)
            except ValueError:
                got = ValueError
            assert got == want, (mu, q)
