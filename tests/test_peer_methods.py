"""Peer decision rules on small constructed runs whose outcomes can be worked out by hand."""

import math

import numpy as np
import pytest

from benchmarks.methods import (
    RunData,
    fixed_horizon,
    flagger,
    flagger_relative,
    kayenta,
    oracle_sprt,
    peeking,
)

EDGES = np.array([100.0, 250.0, 500.0, 1000.0])


def run_of(
    t: int,
    n_c: int | list[int] = 1000,
    e_c: int | list[int] = 0,
    n_b: int | list[int] = 1000,
    e_b: int | list[int] = 0,
    bins_c: list[int] | None = None,
    bins_b: list[int] | None = None,
    edges: np.ndarray = EDGES,
) -> RunData:
    """Constant per-minute counts; latency bins default to everything in the first bucket."""
    def arr(v: int | list[int]) -> np.ndarray:
        return np.broadcast_to(np.asarray(v, dtype=np.int64), (t,)).copy()

    nc, nb = arr(n_c), arr(n_b)

    def cum(bins: list[int] | None, n: np.ndarray) -> np.ndarray:
        if bins is None:
            return np.repeat(n[:, None], edges.size + 1, axis=1)
        return np.tile(np.cumsum(bins), (t, 1)).astype(np.int64)

    return RunData(nc, arr(e_c), nb, arr(e_b), cum(bins_c, nc), cum(bins_b, nb), edges)


# ---- Flagger ----


def test_flagger_promotes_a_clean_run() -> None:
    r = flagger(run_of(10))
    assert (r.decision, r.minute) == ("promote", 10)


def test_flagger_rolls_back_after_five_no_data_minutes() -> None:
    run = run_of(10, n_c=[0] * 5 + [1000] * 5)
    r = flagger(run)
    # The 5th failed check is on window 4 (minute 5); the rollback happens on the next tick, minute 6.
    assert (r.decision, r.minute) == ("rollback", 6)


def test_flagger_counts_failures_cumulatively_not_consecutively() -> None:
    r = flagger(run_of(10, n_c=[0, 1000] * 5))  # five scattered no-data minutes, the 5th on window 8
    assert (r.decision, r.minute) == ("rollback", 10)
    four = [0, 1000] * 4 + [1000, 1000]
    assert flagger(run_of(10, n_c=four)).decision == "promote"


def test_flagger_one_error_in_sixty_requests_fails_the_99_percent_bar() -> None:
    r = flagger(run_of(10, n_c=60, e_c=1))  # 98.3% < 99%
    assert (r.decision, r.minute) == ("rollback", 6)
    assert flagger(run_of(10, n_c=100, e_c=1)).decision == "promote"  # exactly 99% passes


def test_flagger_p99_bar_and_truncation_to_whole_ms() -> None:
    slow = run_of(10, n_c=100, bins_c=[0, 0, 50, 50, 0])  # p99 in (500, 1000]: 990 ms
    assert flagger(slow).decision == "rollback"
    # p99 = 500 + 1·(990 − 989)/11 = 500.09 ms, cut to 500: passes (a float compare would fail).
    edges = np.array([250.0, 500.0, 501.0])
    borderline = run_of(5, n_c=1000, bins_c=[0, 989, 11, 0], edges=edges)
    assert flagger(borderline).decision == "promote"


def test_flagger_last_failed_tick_blocks_promotion() -> None:
    r = flagger(run_of(6, n_c=[1000] * 5 + [0]))
    assert (r.decision, r.minute) == ("inconclusive", 6)


def test_flagger_relative_compares_with_baseline() -> None:
    assert flagger_relative(run_of(10, e_c=20, e_b=20)).decision == "promote"  # 98% both: fine relative to B
    assert flagger(run_of(10, e_c=20, e_b=20)).decision == "rollback"  # the absolute bar fails it
    worse = flagger_relative(run_of(10, e_c=30, e_b=20))  # 97.0 < 98.0 − 0.5
    assert (worse.decision, worse.minute) == ("rollback", 6)
    slower = flagger_relative(run_of(10, bins_c=[0, 0, 1000, 0, 0], bins_b=[0, 1000, 0, 0, 0]))
    assert slower.decision == "rollback"


# ---- Kayenta ----


def test_kayenta_identical_arms_promote() -> None:
    rng = np.random.default_rng(0)
    e = rng.poisson(3, 30).tolist()
    r = kayenta(run_of(30, e_c=e, e_b=e))
    assert (r.decision, r.minute) == ("promote", 30)


def test_kayenta_clear_regression_fails_at_first_informative_judgement() -> None:
    rng = np.random.default_rng(1)
    base = rng.poisson(5, 30)
    run = run_of(30, e_c=(base + 50).tolist(), e_b=base.tolist(),
                 bins_c=[0, 0, 500, 500, 0], bins_b=[500, 500, 0, 0, 0])
    r = kayenta(run, warmup=5)
    # Minute 6 judges one point per side. The two constants get tie-breaking noise, so x − μmin only rounds
    # near y and σ stays > 0 (Kayenta's doubles behave the same); Z never reaches ±z, the CI collapses onto
    # μmin > 0 and all three metrics are High -> score 0 ≤ 50.
    assert (r.decision, r.minute) == ("rollback", 6)


def test_kayenta_nan_strategy_on_a_canary_without_traffic() -> None:
    dead = run_of(20, n_c=0)
    removed = kayenta(dead, nan_strategy="remove")  # every metric Nodata -> score 0
    assert (removed.decision, removed.minute) == ("rollback", 6)
    # replace: NaN -> 0, the canary looks lower than baseline on every metric; direction=increase -> Pass.
    assert kayenta(dead, nan_strategy="replace").decision == "promote"


def test_kayenta_interval_sets_the_judgement_minutes() -> None:
    rng = np.random.default_rng(1)
    base = rng.poisson(5, 30)
    run = run_of(30, e_c=(base + 50).tolist(), e_b=base.tolist())
    # Judgements at minutes 15 and 25. Only error_ratio is High (latency is identical), so both scores are
    # 100·2/3 = 66.67: above marginal (the stage goes on) but below pass at the end -> rollback at 25.
    r = kayenta(run, warmup=5, interval=10)
    assert (r.decision, r.minute) == ("rollback", 25)
    assert "66.67" in r.reason
    clean = kayenta(run_of(30, e_c=base.tolist(), e_b=base.tolist()), warmup=5, interval=10)
    assert (clean.decision, clean.minute) == ("promote", 25)  # the stage ends with its last judgement


def test_kayenta_without_judgements_is_inconclusive() -> None:
    assert kayenta(run_of(5), warmup=5).decision == "inconclusive"


# ---- naive peeking and fixed horizon ----


def test_peeking_rejects_at_the_first_significant_look() -> None:
    e_c = [0, 0, 10] + [0] * 7  # 10 canary errors at minute 3, none on baseline: p = 0.5^10 at rho = 0.5
    r = peeking(run_of(10, e_c=e_c), alpha=0.05)
    assert (r.decision, r.minute) == ("rollback", 3)
    assert peeking(run_of(10, e_c=e_c), errors=False).decision == "promote"
    fisher = peeking(run_of(10, e_c=e_c), errors_test="fisher")
    assert (fisher.decision, fisher.minute) == ("rollback", 3)


def test_peeking_latency_mw_from_bins() -> None:
    slow = run_of(10, n_c=50, n_b=50, bins_c=[0, 50, 0, 0, 0], bins_b=[50, 0, 0, 0, 0])
    r = peeking(slow, errors=False)
    assert (r.decision, r.minute) == ("rollback", 1)
    fast = run_of(10, n_c=50, n_b=50, bins_c=[50, 0, 0, 0, 0], bins_b=[0, 50, 0, 0, 0])
    assert peeking(fast, errors=False).decision == "promote"  # one-sided: faster is not a regression


def test_fixed_horizon_looks_once_at_the_end() -> None:
    e_c = [0, 0, 10] + [0] * 7
    r = fixed_horizon(run_of(10, e_c=e_c))
    assert (r.decision, r.minute) == ("rollback", 10)
    assert fixed_horizon(run_of(10, e_c=1, e_b=1)).decision == "promote"


# ---- oracle ----


def test_oracle_sprt_errors_crossing_minute() -> None:
    # Per minute: 2·log 2 + 98·log(0.98/0.99) = 0.3914; log(1/0.05) = 2.996 is crossed at minute 8.
    run = run_of(20, n_c=100, e_c=2)
    r = oracle_sprt(run, alpha=0.05, p_b=0.01, theta=2.0)
    assert (r.decision, r.minute) == ("rollback", 8)
    per_minute = 2 * math.log(2) + 98 * math.log(0.98 / 0.99)
    assert 7 * per_minute < math.log(20) <= 8 * per_minute
    assert oracle_sprt(run, p_b=0.01, theta=1.0).decision == "promote"  # A/A: the LR stays 1


def test_oracle_sprt_latency_crossing_minute() -> None:
    edges = np.array([1.0, 2.0])
    run = run_of(20, n_c=4, bins_c=[1, 3, 0], bins_b=[2, 2, 0], edges=edges)
    # Per minute: log(0.25/0.5) + 3·log(0.75/0.5) = 0.5232; crosses log 20 at minute 6.
    r = oracle_sprt(run, alpha=0.05, pi_b=np.array([0.5, 0.5, 0.0]), pi_c=np.array([0.25, 0.75, 0.0]))
    assert (r.decision, r.minute) == ("rollback", 6)


def test_run_data_validates_shapes() -> None:
    with pytest.raises(ValueError, match="cum_c"):
        RunData(np.ones(3, np.int64), np.zeros(3, np.int64), np.ones(3, np.int64), np.zeros(3, np.int64),
                np.ones((3, 2), np.int64), np.ones((3, 5), np.int64), EDGES)
