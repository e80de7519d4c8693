import math

import numpy as np
import pytest

from analyzer.stats.histogram import (
    bin_counts,
    binned_mean,
    cumulative,
    exceedances,
    histogram_mean,
    histogram_quantile,
    quantile_interval,
)

EDGES = [1.0, 2.0, 4.0]
# bins: 2 in (0,1], 4 in (1,2], 2 in (2,4], 2 in (4,+Inf)
CUM = [2, 6, 8, 10]


def test_bins_and_exceedances_from_cumulative() -> None:
    assert bin_counts(CUM).tolist() == [2, 4, 2, 2]
    assert cumulative([2, 4, 2, 2]).tolist() == CUM
    assert exceedances(CUM).tolist() == [8, 4, 2]
    stacked = np.array([CUM, [0, 0, 1, 1]])
    assert bin_counts(stacked).tolist() == [[2, 4, 2, 2], [0, 0, 1, 0]]


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        (0.1, 0.5),  # rank 1 in (0,1]: 0 + 1·1/2, lowest bucket starts at 0
        (0.5, 1.75),  # rank 5: 1 + 1·(5−2)/4
        (0.75, 3.5),  # rank 7.5: 2 + 2·(7.5−6)/2
        (0.8, 4.0),  # rank 8 hits the top of (2,4]
        (0.9, 4.0),  # rank 9 is in +Inf: the highest finite bound
        (1.0, 4.0),
    ],
)
def test_histogram_quantile_hand_values(q: float, expected: float) -> None:
    assert histogram_quantile(q, EDGES, CUM) == pytest.approx(expected)


def test_histogram_quantile_special_cases() -> None:
    assert math.isnan(histogram_quantile(0.99, EDGES, [0, 0, 0, 0]))
    assert histogram_quantile(-0.1, EDGES, CUM) == -math.inf
    assert histogram_quantile(1.1, EDGES, CUM) == math.inf
    assert math.isnan(histogram_quantile(float("nan"), EDGES, CUM))
    assert math.isnan(histogram_quantile(0.5, [], [5]))  # only the +Inf bucket: fewer than 2 buckets
    # Lowest bound ≤ 0 is returned as is when the rank falls in it.
    assert histogram_quantile(0.5, [0.0, 1.0], [3, 5, 5]) == 0.0
    # Non-monotonic counts are forced monotonic: [2, 1, 4] -> [2, 2, 4]; rank 2 in (0,1] -> 1.
    assert histogram_quantile(0.5, [1.0, 2.0], [2, 1, 4]) == pytest.approx(1.0)


def test_histogram_quantile_vectorised_matches_rows() -> None:
    rng = np.random.default_rng(3)
    edges = np.array([0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000])
    bins = rng.poisson(3.0, size=(40, edges.size + 1))
    bins[5] = 0  # an empty minute gives NaN
    cum = np.cumsum(bins, axis=1)
    got = histogram_quantile(0.99, edges, cum)
    want = [histogram_quantile(0.99, edges, row) for row in cum]
    np.testing.assert_allclose(got, want, equal_nan=True)
    assert math.isnan(got[5])


def test_means() -> None:
    assert histogram_mean(30.0, 10) == 3.0
    assert math.isnan(histogram_mean(0.0, 0))
    # midpoints 0.5, 1.5, 3, and the +Inf bin at 4: (2·0.5 + 4·1.5 + 2·3 + 2·4) / 10
    assert binned_mean(EDGES, CUM) == pytest.approx(2.1)


def test_quantile_interval_ranks_and_edges() -> None:
    edges = np.arange(10.0, 110.0, 10.0)  # 10, 20, …, 100
    cum = np.concatenate((np.arange(100, 1001, 100), [1000]))  # 100 per bucket up to 100, none above
    qi = quantile_interval(0.5, edges, cum, confidence=0.95)
    # Bin(1000, 0.5): 2.5% and 97.5% points are 469 and 531, so ranks 469 and 532.
    assert (qi.low_rank, qi.high_rank, qi.n) == (469, 532, 1000)
    # Rank 469 sits in (40, 50], rank 532 in (50, 60]: the interval of edges is [40, 60].
    assert (qi.low, qi.high) == (40.0, 60.0)
    assert qi.low <= qi.estimate <= qi.high


def test_quantile_interval_unbounded_when_too_few() -> None:
    qi = quantile_interval(0.99, [1.0, 2.0], [3, 5, 5])
    assert qi.high == math.inf  # 5 observations cannot bound a p99 from above
    empty = quantile_interval(0.5, [1.0], [0, 0])
    assert (empty.low, empty.high, empty.n) == (0.0, math.inf, 0)


def test_quantile_interval_covers_true_quantile() -> None:
    rng = np.random.default_rng(7)
    edges = np.array([0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500])
    true_p99 = 50 * math.exp(0.8 * 2.3263478740408408)  # lognormal(log 50, 0.8)
    hits = 0
    reps = 300
    for _ in range(reps):
        x = np.exp(np.log(50) + 0.8 * rng.standard_normal(400))
        cum = np.cumsum(np.bincount(np.searchsorted(edges, x, side="left"), minlength=edges.size + 1))
        qi = quantile_interval(0.99, edges, cum, confidence=0.9)
        hits += qi.low <= true_p99 <= qi.high
    assert hits / reps >= 0.88


def test_binomial_quantile_rank_matches_scipy() -> None:
    from scipy import stats as sps

    from analyzer.stats.histogram import _binom_ppf

    rng = np.random.default_rng(12)
    cases = [(int(rng.integers(1, 2_000_000)), float(rng.choice([0.5, 0.95, 0.99])), float(rng.choice([0.025, 0.975])))
             for _ in range(300)] + [(n, 0.99, 0.025) for n in range(1, 120)]
    for n, q, p in cases:
        assert _binom_ppf(p, n, q) == int(sps.binom.ppf(p, n, q)), (p, n, q)
