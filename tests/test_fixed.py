import numpy as np
import pytest
from scipy import stats

from analyzer.stats.fixed import (
    benjamini_hochberg,
    boschloo,
    clopper_pearson,
    conditional_binomial,
    conditional_binomial_p,
    fisher_exact,
    fisher_greater_p,
    hodges_lehmann,
    holm,
    ks_bins,
    mann_whitney_bins,
)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("alternative", ["greater", "less", "two-sided"])
def test_mann_whitney_from_bins_equals_scipy_on_expanded_data(seed: int, alternative: str) -> None:
    rng = np.random.default_rng(seed)
    k = int(rng.integers(3, 12))
    c = rng.poisson(rng.uniform(0.5, 20), k)
    b = rng.poisson(rng.uniform(0.5, 40), k)
    c[0] += 1
    b[-1] += 1  # both samples non-empty
    r = mann_whitney_bins(c, b, alternative=alternative)  # type: ignore[arg-type]
    x, y = np.repeat(np.arange(k), c), np.repeat(np.arange(k), b)
    ref = stats.mannwhitneyu(x, y, alternative=alternative, method="asymptotic", use_continuity=False)
    assert r.statistic == pytest.approx(ref.statistic)
    assert r.pvalue == pytest.approx(ref.pvalue, rel=1e-9, abs=1e-15)
    assert r.auc == pytest.approx(ref.statistic / (c.sum() * b.sum()))


def test_mann_whitney_bins_direction() -> None:
    slow = mann_whitney_bins([0, 10, 90], [50, 40, 10])
    assert slow.zscore > 0 and slow.pvalue < 1e-6 and slow.auc > 0.5


def test_conditional_binomial_matches_binomtest_and_vectorised() -> None:
    r = conditional_binomial(10, 1000, 30, 9000)
    assert r.pvalue == pytest.approx(stats.binomtest(10, 40, 0.1, alternative="greater").pvalue)
    assert r.ratio == pytest.approx(3.0)
    assert r.ci[0] < 3.0 < r.ci[1]
    vec = conditional_binomial_p([10, 0, 3], [1000, 50, 100], [30, 0, 3], [9000, 50, 100])
    assert vec[0] == pytest.approx(r.pvalue)
    assert vec[1] == 1.0  # no events: no evidence
    assert vec[2] == pytest.approx(stats.binomtest(3, 6, 0.5, alternative="greater").pvalue)


def test_fisher_vectorised_matches_scipy_and_boschloo_is_not_weaker() -> None:
    cases = [(10, 1000, 30, 9000), (5, 200, 1, 200), (0, 100, 4, 100)]
    vec = fisher_greater_p(*np.array(cases).T)
    for (ec, nc, eb, nb), p in zip(cases, vec, strict=True):
        ref = stats.fisher_exact([[ec, nc - ec], [eb, nb - eb]], alternative="greater").pvalue
        assert p == pytest.approx(ref)
        assert fisher_exact(ec, nc, eb, nb).pvalue == pytest.approx(ref)
    # Boschloo uses Fisher's p as its statistic and is uniformly more powerful.
    assert boschloo(5, 200, 1, 200).pvalue <= fisher_exact(5, 200, 1, 200).pvalue


def test_ks_bins_permutation() -> None:
    same = ks_bins([10, 20, 30, 40], [11, 19, 31, 39], n_resamples=499, seed=1)
    assert same.pvalue > 0.5
    shifted = ks_bins([0, 5, 20, 75], [40, 30, 20, 10], n_resamples=499, seed=1)
    # F_C = [0, .05, .25, 1], F_B = [.4, .7, .9, 1]: the largest gap is 0.65.
    assert shifted.statistic == pytest.approx(0.65)
    assert shifted.pvalue == pytest.approx(1 / 500)


def test_hodges_lehmann_order_statistic_ci() -> None:
    rng = np.random.default_rng(2)
    y = rng.normal(size=10)
    x = rng.normal(size=10) + 1.0
    r = hodges_lehmann(x, y, confidence=0.95)
    d = np.sort((x[:, None] - y[None, :]).ravel())
    # k = floor(50 − 1.96·sqrt(100·21/12)) = floor(24.07) = 24 -> [d_(24), d_(77)]
    assert (r.low, r.high) == (d[23], d[76])
    assert r.estimate == pytest.approx(np.median(d))
    exact = hodges_lehmann(y + 2.5, y)
    assert exact.estimate == pytest.approx(2.5)


def test_holm_and_bh_known_examples() -> None:
    p = [0.01, 0.04, 0.03, 0.005]
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = .02, .03, .06, .04 -> running max .02, .03, .06, .06
    np.testing.assert_allclose(holm(p), [0.03, 0.06, 0.06, 0.02])
    # sorted times m/i = .02, .02, .04, .04 -> running min from the top gives the same
    np.testing.assert_allclose(benjamini_hochberg(p), [0.02, 0.04, 0.04, 0.02])
    rng = np.random.default_rng(4)
    ps = rng.uniform(size=25) ** 3
    np.testing.assert_allclose(benjamini_hochberg(ps), stats.false_discovery_control(ps, method="bh"))
    assert holm([0.5, 0.9]).tolist() == [1.0, 1.0]


@pytest.mark.parametrize(("k", "n"), [(0, 10), (3, 10), (10, 10), (17, 1234), (1, 1)])
def test_clopper_pearson_matches_scipy(k: int, n: int) -> None:
    ci = clopper_pearson(k, n, 0.95)
    ref = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
    assert ci.low == pytest.approx(ref.low, abs=1e-12)
    assert ci.high == pytest.approx(ref.high, abs=1e-12)
