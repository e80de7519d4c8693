"""Our gate's rollback rule, vectorised over replicates (the open-loop form of `analyzer.judge.judge`).

Per tick with data (both subsets present, canary requests > 0, not in the configured warm-up):
* errors: the §5.1 mixture e-process on (n_C, e_C, n_B, e_B), rollback at log E ≥ log(1/α_err);
* latency: the same e-process on exceedances of each gate edge (requests = the +Inf bucket), the e-values
  averaged over edges (each capped at e^700, as the judge does), rollback at E_lat ≥ 1/α_lat;
* α_err = α_lat = α/2 (Bonferroni by weight, `Analysis.alpha_for` with two gate metrics of weight 1).
Each interval's likelihood ratio is tempered by 1/φ̂_k, the predictable bound on the noise between intervals
(`analyzer.stats.dispersion`); the update is `analyzer.stats.rate_ratio.advance`, shared with the judge.
Ticks without data leave the evidence unchanged: silence can never cause a rollback.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from analyzer.config import LatencyMetric
from analyzer.model import ISTIO_DEFAULT_EDGES_MS as EDGES
from analyzer.stats.dispersion import DEFAULT_PRIOR_TAU, edge_priors
from analyzer.stats.rate_ratio import RatioState, advance, ratio_grid

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
LOG_CAP = 700.0
LATENCY_PRIOR_TAU = LatencyMetric.model_fields["interval_noise"].default


@dataclass(frozen=True)
class GateTrace:
    """Per-replicate, per-tick log e-values and the first rollback tick (−1 = none)."""

    log_e_errors: FloatArray  # [R, T]
    log_e_latency: FloatArray  # [R, T], log of the edge-averaged e-value
    log_e_edges: FloatArray  # [R, T, K]
    rollback_tick: IntArray  # [R]

    @property
    def rollback_minute(self) -> IntArray:
        """Decision minute (tick + 1), or −1 without a rollback."""
        return np.where(self.rollback_tick >= 0, self.rollback_tick + 1, -1)


def ratio_log_e(n_c: IntArray, e_c: IntArray, n_b: IntArray, e_b: IntArray, active: NDArray[np.bool_],
                noise: float = DEFAULT_PRIOR_TAU, tolerance: float = 1.5,
                priors: FloatArray | None = None) -> FloatArray:
    """Rollback log e-value after every tick, [R, T], with only `active` ticks updating the evidence.

    The same tempered update as the judge (`analyzer.stats.rate_ratio.advance`), one tick at a time over [R].
    `priors` [R, T], when given, is each tick's prior bound in place of `noise` (a latency edge's `edge_prior`).
    """
    grid = ratio_grid(tolerance)
    if noise == 0:  # φ̂ ≡ 1: the untempered sums, in closed form (the test before issue 9)
        thetas = grid.thetas[grid.rollback]
        n = n_c + n_b
        rho = np.divide(n_c, n, out=np.zeros(n.shape), where=n > 0)
        events = np.where(active, e_c + e_b, 0)
        pen = np.cumsum(events[..., None] * np.log1p(rho[..., None] * (thetas - 1.0)), axis=1)
        x = np.cumsum(np.where(active, e_c, 0), axis=1)
        ll = x[..., None] * np.log(thetas) - pen
        top = ll.max(axis=-1)
        return top + np.log(np.exp(ll - top[..., None]).sum(axis=-1)) - np.log(thetas.size)
    r, t = n_c.shape
    state = RatioState.zeros((r,), grid.thetas.size)
    out = np.zeros((r, t))
    zero = np.zeros(r)
    for k in range(t):
        on = active[:, k]
        bound = noise if priors is None else priors[:, k]
        state = advance(grid, tolerance, bound, state, *(np.where(on, a[:, k], zero) for a in (n_c, e_c, n_b, e_b)))
        ll = state.tx[:, None] * grid.log_thetas[grid.rollback] - state.tpen[:, grid.rollback]
        top = ll.max(axis=1)
        out[:, k] = top + np.log(np.exp(ll - top[:, None]).sum(axis=1)) - np.log(ll.shape[1])
    return out


def gate(
    n_c: IntArray,
    e_c: IntArray,
    n_b: IntArray,
    e_b: IntArray,
    cum_c: IntArray,
    cum_b: IntArray,
    edge_index: list[int],
    *,
    alpha: float = 0.01,
    warmup: int = 0,
    has_data: NDArray[np.bool_] | None = None,
    noise: tuple[float, float] = (DEFAULT_PRIOR_TAU, LATENCY_PRIOR_TAU),
) -> GateTrace:
    """The rollback rule on [R, T] arrays; `edge_index` are the positions of the gate edges among the buckets."""
    t = n_c.shape[1]
    active = n_c > 0
    if has_data is not None:
        active &= has_data
    active &= (np.arange(t) >= warmup)[None, :]
    alpha_j = alpha / 2
    log_err = ratio_log_e(n_c, e_c, n_b, e_b, active, noise[0])
    tot_c, tot_b = cum_c[..., -1], cum_b[..., -1]
    # Each edge's prior bound follows its tail slope in the pooled histogram of the ticks with data so far.
    pooled = np.cumsum(np.where(active[..., None], cum_c + cum_b, 0), axis=1)
    priors = edge_priors(noise[1], tuple(EDGES), pooled, list(edge_index))
    per_edge = np.stack(
        [ratio_log_e(tot_c, tot_c - cum_c[..., j], tot_b, tot_b - cum_b[..., j], active, noise[1],
                     priors=priors[..., i])
         for i, j in enumerate(edge_index)],
        axis=-1,
    )
    capped = np.minimum(per_edge, LOG_CAP)
    top = capped.max(axis=-1)
    log_lat = top + np.log(np.exp(capped - top[..., None]).mean(axis=-1))
    threshold = np.log(1.0 / alpha_j)
    hit = (log_err >= threshold) | (log_lat >= threshold)
    first = np.where(hit.any(axis=1), hit.argmax(axis=1), -1)
    return GateTrace(log_err, log_lat, per_edge, first)
