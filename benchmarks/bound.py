"""The fastest valid test: a Neyman–Pearson lower bound on the detection delay under the issue 9 noise cells.

A test that keeps A/A false rollbacks ≤ α under a noisy null P0 has, at every look t, P0(rolled back by t) ≤ α. Its
rollback-by-t event is then a level-α test of P0 against the regression P1 on the first t intervals, so its power by
t is at most the Neyman–Pearson power of "P1 vs P0" on those intervals. The first t where that power reaches 50% is
a lower bound on the median delay of ANY valid test (docs/statistics-validity.md §8).

* errors: P0 is the cell's traffic with canary-only, mean-one log-normal noise of σ on the error rate per interval
  (the issue's cell); P1 the binomial regression of `benchmarks.delays`. p_B is given to the test (a test that must
  also be valid for unknown p_B can only do worse), so the baseline's counts are ancillary and the likelihood ratio
  is the canary's: Bin(x; n, θ p) against ∫ Bin(x; n, p z) dLN(z), integrated on a fine grid in log z.
* latency: P0 is the per-pod jitter cell (1 canary pod, 5 baseline pods, each pod's median × a per-minute
  log-normal of σ); P1 the ×1.2 regression without jitter. The test is also given each baseline pod's bucket counts
  (more data can only raise the Neyman–Pearson power, so the bound stays a bound), which makes the likelihood a
  product of one-dimensional integrals.

The power at the Neyman–Pearson threshold is computed from P1's samples alone: P0(Λ_t > c) = E_1[e^{−Λ_t}; Λ_t > c]
(Λ_t the log likelihood ratio), exact in expectation and of small variance exactly where the threshold sits.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy.stats import norm

from benchmarks.generate import Batch, Cell, _lognormal_bins

FloatArray = NDArray[np.float64]
ERROR_NOISE = 0.5  # the canary-only noise cell (σ of the log error rate per interval)
LATENCY_JITTER = 0.03  # the per-pod latency jitter cell (σ of the log median per pod and minute)
BASELINE_PODS = 5
U = np.linspace(-7.0, 7.0, 1401)  # standard-normal grid of the log noise; spacing 0.01
LOG_W = np.log(norm.pdf(U) / norm.pdf(U).sum())


def _log_mix(terms: FloatArray) -> FloatArray:
    """log Σ_g w_g exp(terms[..., g]) on the normal grid."""
    a = terms + LOG_W
    top = a.max(axis=-1, keepdims=True)
    return (top + np.log(np.exp(a - top).sum(axis=-1, keepdims=True)))[..., 0]


def error_log_lr(cell: Cell, batch: Batch, sigma: float = ERROR_NOISE) -> FloatArray:
    """Per-interval log dP1/dP0 of the canary's errors, [R, T]: binomial θp against the log-normal mixture."""
    p = cell.p_b
    z = np.exp(sigma * U - sigma**2 / 2)
    pz = np.minimum(p * z, 1 - 1e-12)
    log_a, log_b = np.log(pz), np.log1p(-pz)
    p1 = min(p * cell.theta, 1 - 1e-12)
    x = batch.e_c.astype(float)
    rest = (batch.n_c - batch.e_c).astype(float)
    out = np.empty(x.shape)
    for k in range(x.shape[1]):  # one interval at a time keeps [R, G] small
        null = _log_mix(x[:, k, None] * log_a + rest[:, k, None] * log_b)
        out[:, k] = x[:, k] * np.log(p1) + rest[:, k] * np.log1p(-p1) - null
    return out


def _bins(cum: NDArray[np.int64]) -> NDArray[np.int64]:
    return np.diff(cum, axis=-1, prepend=0)


def latency_log_lr(cell: Cell, batch: Batch, sigma: float = LATENCY_JITTER, seed: int = 0) -> FloatArray:
    """Per-interval log dP1/dP0 of the bucket counts, [R, T]: the canary's, plus each baseline pod's."""
    jitter = np.exp(sigma * U - sigma**2 / 2)
    log_null = np.log(np.maximum(_lognormal_bins(cell.median_ms, cell.sigma, jitter), 1e-300))  # [G, J+1]
    log_c1 = np.log(np.maximum(batch.pi_c, 1e-300))
    log_b1 = np.log(np.maximum(batch.pi_b, 1e-300))
    bins_c, bins_b = _bins(batch.cum_c).astype(float), _bins(batch.cum_b)
    rng = np.random.default_rng(seed)
    # Under P1 the pods are an even random split of the baseline's requests: each bucket's count splits evenly.
    pods = rng.multinomial(bins_b, np.full(BASELINE_PODS, 1.0 / BASELINE_PODS)).astype(float)  # [R, T, J+1, P]
    out = bins_c @ log_c1 - _log_mix(bins_c @ log_null.T)
    for j in range(BASELINE_PODS):
        pod = pods[..., j]
        out += pod @ log_b1 - _log_mix(pod @ log_null.T)
    return out


def np_power(log_lr: FloatArray, alpha: float) -> FloatArray:
    """Neyman–Pearson power at level alpha on the first t intervals, for t = 1..T, from P1's samples [R, T]."""
    cum = np.cumsum(log_lr, axis=1)
    power = np.empty(cum.shape[1])
    for t in range(cum.shape[1]):
        lam = np.sort(cum[:, t])[::-1]
        size = np.cumsum(np.exp(-lam)) / lam.size  # P0(Λ ≥ λ_(i)) estimated from P1's samples
        power[t] = np.searchsorted(size, alpha, side="right") / lam.size
    return power


def fastest_valid_minute(cell: Cell, batch: Batch, alpha: float) -> tuple[int | None, FloatArray]:
    """First minute at which the Neyman–Pearson power reaches 50% (None within the horizon), and the power curve."""
    log_lr = latency_log_lr(cell, batch) if cell.kind == "latency" else error_log_lr(cell, batch)
    power = np_power(log_lr, alpha)
    hit = np.flatnonzero(power >= 0.5)
    return (int(hit[0]) + 1 if hit.size else None), power
