"""The error/exceedance e-process: validity under H0, power under H1, confidence-sequence coverage."""

import math

import numpy as np
import pytest

from analyzer.stats.rate_ratio import RatioEvidence, detection_power, negligible_log_e
from analyzer.stats.srm import SrmEvidence


def run(rng: np.random.Generator, theta: float, p_b: float, *, looks: int = 60, rps: float = 20.0,
        share: float | None = 0.1, shock: float = 0.3) -> tuple[RatioEvidence, float, bool]:
    """One canary: returns the evidence, the max log e-value, and whether the CS always covered theta."""
    ev = RatioEvidence(1.5)
    top = -math.inf
    covered = True
    for k in range(looks):
        n = rng.poisson(rps * 60 * (1 + 0.5 * math.sin(k / 10)))
        w = share if share is not None else min(0.5, 0.1 + 0.1 * (k // 5))  # a Flagger-style ramp
        n_c = rng.binomial(n, w)
        p = p_b * max(0.05, 1 + shock * rng.standard_normal())  # shared drift of the error rate
        ev = ev.update(n_c, rng.binomial(n_c, min(1.0, p * theta)), n - n_c, rng.binomial(n - n_c, p))
        s = ev.summary(alpha=0.05)
        top = max(top, s.log_e)
        if s.ci is not None and not (s.ci[0] <= theta <= s.ci[1]):
            covered = False
    return ev, top, covered


@pytest.mark.parametrize(("p_b", "share"), [(0.005, 0.1), (0.001, None), (0.02, 0.5)])
def test_aa_false_rollbacks_stay_below_alpha(p_b: float, share: float | None) -> None:
    rng = np.random.default_rng(7)
    alpha, reps = 0.05, 400
    rejections = sum(run(rng, 1.0, p_b, share=share)[1] >= math.log(1 / alpha) for _ in range(reps))
    se = math.sqrt(alpha * (1 - alpha) / reps)
    assert rejections / reps <= alpha + 3 * se


def test_regression_is_detected() -> None:
    rng = np.random.default_rng(11)
    hits = sum(run(rng, 3.0, 0.005)[1] >= math.log(1 / 0.005) for _ in range(100))
    assert hits >= 95


def test_confidence_sequence_coverage() -> None:
    rng = np.random.default_rng(3)
    runs = 500
    covered = sum(run(rng, theta, 0.01, looks=30, rps=10, share=0.2)[2]
                  for theta in (1.0, 2.0) for _ in range(runs // 2))
    assert covered / runs >= 0.95


def test_zero_counts_carry_no_evidence() -> None:
    ev = RatioEvidence(1.5)
    for _ in range(50):
        ev = ev.update(100, 0, 900, 0)
    s = ev.summary()
    assert s.log_e == 0.0 and s.estimate is None and s.ci is None
    assert ev.update(0, 0, 0, 0) is ev


def test_canary_only_errors_needed_at_alpha_005() -> None:
    """statistics.md §5.1 table: at rho 0.1 the default grid needs 5 canary-only errors at alpha 0.005."""
    ev = RatioEvidence(1.5)
    needed = 0
    while ev.summary().log_e < math.log(1 / 0.005):
        ev = ev.update(100, 1, 900, 0)
        needed += 1
    assert needed == 5


def test_invalid_counts_are_rejected() -> None:
    with pytest.raises(ValueError, match="invalid counts"):
        RatioEvidence(1.5).update(10, 11, 100, 0)


def test_json_round_trip() -> None:
    ev = RatioEvidence(1.5).update(100, 3, 900, 5).update(120, 1, 880, 4)
    assert RatioEvidence.from_json(ev.to_json()) == ev


def test_detection_power_grows_with_exposure_and_effect() -> None:
    small = [(60, 540)] * 10
    large = [(600, 5400)] * 30
    assert detection_power(small, 0.005, 2.0, 0.005) < detection_power(large, 0.005, 2.0, 0.005)
    assert detection_power(large, 0.005, 1.2, 0.005) < detection_power(large, 0.005, 5.0, 0.005)
    assert detection_power(large, 0.0, 2.0, 0.005) == 0.0


def test_negligible_rate_evidence() -> None:
    assert negligible_log_e(0, 50_000, 0.001) > math.log(20)
    assert negligible_log_e(100, 50_000, 0.001) < 0  # 0.2% is not below 0.1%


def test_srm_detects_mismatch_and_tolerates_step_changes() -> None:
    rng = np.random.default_rng(5)
    ev = SrmEvidence()
    for share in (0.1, 0.25, 0.5):
        for _ in range(10):
            n = rng.poisson(3000)
            c = rng.binomial(n, share)
            ev = ev.update(c, n - c, share)
    assert ev.log_e < math.log(1000)
    bad = SrmEvidence()
    for _ in range(5):
        c = rng.binomial(3000, 0.05)
        bad = bad.update(c, 3000 - c, 0.1)
    assert bad.log_e > math.log(1000)
    assert SrmEvidence.from_json(bad.to_json()) == bad


def test_evidence_vectors_are_packed_floats_bit_identical_to_the_array_path() -> None:
    """The per-θ vectors are held as 8-byte floats: the same bits as the batch path, a quarter of a tuple's memory."""
    import tracemalloc

    from analyzer.stats import dispersion
    from analyzer.stats.packed import Floats, IntPairs
    from analyzer.stats.rate_ratio import RatioState, advance, ratio_grid

    rng = np.random.default_rng(5)
    grid = ratio_grid(1.5, 2.0)
    ev = RatioEvidence(1.5)
    state = RatioState.zeros((), grid.thetas.size)
    exposure = []
    for _ in range(40):
        n_c, n_b = int(rng.poisson(600)), int(rng.poisson(5400))
        counts = (n_c, int(rng.binomial(n_c, 0.012)), n_b, int(rng.binomial(n_b, 0.01)))
        ev = ev.update(*counts)
        exposure.append((n_c, n_b))
        state = advance(grid, 1.5, ev.noise, state, *(np.asarray(float(c)) for c in counts))
        assert isinstance(ev.pen, Floats) and isinstance(ev.tpen, Floats) and isinstance(ev.tau_ll, Floats)
        for packed, array in ((ev.pen, state.pen), (ev.tpen, state.tpen), (ev.tau_ll, state.tau_ll)):
            assert np.asarray(packed).tobytes() == array.tobytes()
    assert isinstance(ev.exposure, IntPairs) and ev.exposure == exposure and list(ev.exposure) == exposure
    assert ev.to_json()["exposure"] == [list(p) for p in exposure]
    back = RatioEvidence.from_json(ev.to_json())
    assert back == ev and back.summary() == ev.summary()
    assert ev.pen == tuple(state.pen.tolist()) and hash(ev.pen) == hash(tuple(state.pen.tolist()))
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    kept = [RatioEvidence.from_json(ev.to_json()) for _ in range(20)]
    per = (tracemalloc.get_traced_memory()[0] - before) / len(kept)
    tracemalloc.stop()
    values = 2 * grid.thetas.size + dispersion.TAU.size + 2 * len(exposure)
    assert per < 8 * values + 1500, per  # as tuples: 32 bytes a float, 60 an int of a pair
