"""Noise between intervals: a predictable upper bound on it, and the tempering it implies (docs/statistics-validity.md).

The conditional binomial (statistics.md §5.1) assumes both subsets share one rate inside each interval. Real pods
vary minute to minute with equal means, so the canary's share of an interval's events has extra variance:

    Var(x_k | E_k) ≈ E_k q_k (1 − q_k) · φ_k,     φ_k = 1 + (E_k − 1) · q_k (1 − q_k) · τ²

with τ² the variance of the log rate ratio between intervals. Raising each interval's likelihood ratio to 1/φ̂_k
keeps the e-process a supermartingale (exactly when the data are binomial, since φ̂_k ≥ 1; to the Gaussian order when
they are not and φ̂_k ≥ φ_k). τ̂ is an upper confidence bound from past intervals only (Pearson residuals around one
constant ratio, so a real regression does not read as noise), with a prior that supplies the bound before there is
data. All functions broadcast over leading batch dimensions so the judge and the vectorised benchmark share them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]

# τ: the between-interval standard deviation of log(canary rate / baseline rate).
TAU = np.concatenate([[0.0], np.geomspace(0.005, 2.0, 56)])
TAU2 = TAU**2
LEVEL = 0.9  # one-sided confidence of the upper bound on τ
DEFAULT_PRIOR_TAU = 0.5  # the bound used before the data say otherwise (canary-only log-normal σ 0.5)
# Latency: a jitter J of the latency scale moves the exceedance share at an edge e by κ(e)·log J, with κ(e) the
# tail slope −d log S/d log e there. `intervalNoise` is stated at KAPPA_REF (≈ the p99 edge of a log-normal of σ 0.5);
# an edge with a gentler tail gets proportionally less (edge_prior). The slope is read off the pooled histogram.
KAPPA_REF = 7.0
KAPPA_MIN = 1.0  # floor on the estimated slope: a flat stretch of the histogram is sampling noise, not a flat tail
MIN_TAIL = 5  # pooled requests above the upper neighbouring edge needed to read the slope
# A residual is used only when the interval has this much binomial information, E·q(1−q): below it the Gaussian
# quasi-likelihood of r² is poor, and there the noise barely matters anyway (φ − 1 grows with E).
MIN_INFO = 2.0


@dataclass(frozen=True)
class NoiseBound:
    """What the tempering used at the last interval (scipy-style named result)."""

    tau_upper: float  # upper confidence bound on τ from the past intervals and the prior
    phi: float  # the divisor applied to the last interval's log likelihood ratio
    intervals: int  # residuals behind the bound


@lru_cache(maxsize=32)
def prior_log_weights(prior_tau: float) -> FloatArray:
    """Log prior mass on the τ grid: exponential in τ, with P(τ > prior_tau) = 1 − LEVEL; 0 means binomial."""
    return _prior_log_weights_array(np.asarray(float(prior_tau)))


_MIDS = np.concatenate([[0.0], (TAU[1:] + TAU[:-1]) / 2, [TAU[-1] * 1.05]])


def _prior_log_weights_array(prior_tau: FloatArray) -> FloatArray:
    """`prior_log_weights` for an array of prior bounds, [..., G_tau] (one formula for the judge and the benchmark)."""
    tau0 = np.asarray(prior_tau, dtype=float)[..., None]
    binomial = tau0 <= 0
    rate = -np.log(1.0 - LEVEL) / np.where(binomial, 1.0, tau0)
    mass = np.exp(-rate * _MIDS[:-1]) - np.exp(-rate * _MIDS[1:])
    mass[..., -1] += np.exp(-rate[..., 0] * _MIDS[-1])  # the tail beyond the grid sits on its last point
    with np.errstate(divide="ignore"):
        out = np.log(mass / mass.sum(axis=-1, keepdims=True))
        point = np.log((np.arange(TAU.size) == 0).astype(float))
    return np.where(binomial, point, out)


def tau2_upper(loglik: FloatArray, prior_tau: float | FloatArray) -> FloatArray:
    """Upper LEVEL quantile of τ² given the residual log-likelihood on the grid, [...] from [..., G_tau].

    `prior_tau` is one bound, or one per batch member (latency edges: `edge_prior`).
    """
    weights = prior_log_weights(float(prior_tau)) if np.ndim(prior_tau) == 0 else _prior_log_weights_array(prior_tau)
    post = loglik + weights
    post = post - post.max(axis=-1, keepdims=True)
    p = np.exp(post)
    cdf = np.cumsum(p, axis=-1) / p.sum(axis=-1, keepdims=True)
    idx = np.minimum((cdf < LEVEL - 1e-12).sum(axis=-1), TAU.size - 1)
    return TAU2[idx]


def phi(events: FloatArray, v: FloatArray, tau2: FloatArray) -> FloatArray:
    """The dispersion factor of one interval: 1 + (E − 1)·q(1 − q)·τ² (≥ 1; 1 for 0 or 1 event)."""
    return 1.0 + np.maximum(events - 1.0, 0.0) * v * tau2


def residual_loglik(x: FloatArray, events: FloatArray, q: FloatArray, leverage: FloatArray) -> FloatArray:
    """One interval's contribution to the τ² log-likelihood, [..., G_tau] (0 where the residual is not used).

    Pearson residual r² = (x − E q̂)² / (E q̂(1 − q̂)(1 − h)) around the constant-ratio fit q̂, leverage-corrected
    (h = this interval's share of the information behind q̂), with mean 1 + a·τ², a = (E − 1) q̂(1 − q̂). The
    Gaussian quasi-likelihood −½[log(1 + aτ²) + r²/(1 + aτ²)] has an unbiased score for any law with that mean.
    """
    x, events, q, leverage = np.broadcast_arrays(*(np.asarray(a, dtype=float) for a in (x, events, q, leverage)))
    info = events * q * (1.0 - q)
    use = (info >= MIN_INFO) & (leverage < 0.99)
    denom = np.where(use, info * (1.0 - np.minimum(leverage, 0.99)), 1.0)
    r2 = np.where(use, (x - events * q) ** 2 / denom, 0.0)
    a = np.where(use, np.maximum(events - 1.0, 0.0) * q * (1.0 - q), 0.0)
    scale = 1.0 + a[..., None] * TAU2
    ll = -0.5 * (np.log(scale) + r2[..., None] / scale)
    return np.where(use[..., None], ll + 0.5 * r2[..., None], 0.0)  # shift by a constant in τ: keeps values small


def refine_log_theta(ll: FloatArray, log_thetas: FloatArray) -> FloatArray:
    """Maximum of a log-likelihood on a uniform log θ grid, refined by a parabola through the top three points."""
    i = np.argmax(ll, axis=-1)
    inner = np.clip(i, 1, log_thetas.size - 2)
    lo = np.take_along_axis(ll, (inner - 1)[..., None], axis=-1)[..., 0]
    mid = np.take_along_axis(ll, inner[..., None], axis=-1)[..., 0]
    hi = np.take_along_axis(ll, (inner + 1)[..., None], axis=-1)[..., 0]
    curv = lo - 2 * mid + hi
    with np.errstate(divide="ignore", invalid="ignore"):
        delta = np.where(curv < 0, 0.5 * (lo - hi) / curv, 0.0)
    delta = np.where((i == inner) & np.isfinite(delta), np.clip(delta, -1.0, 1.0), 0.0)
    step = log_thetas[1] - log_thetas[0]
    return log_thetas[i] + delta * step


def share(rho: FloatArray, theta: FloatArray) -> FloatArray:
    """The canary's expected share of events, q(θ) = ρθ / (ρθ + 1 − ρ)."""
    return rho * theta / (rho * theta + 1.0 - rho)


def tail_slope(above_lo: FloatArray, above_hi: FloatArray, edge_lo: float, edge_hi: float) -> FloatArray:
    """κ̂ = log(S(e_lo)/S(e_hi)) / log(e_hi/e_lo) from pooled request counts above the two neighbouring edges.

    NaN where it cannot be read (fewer than MIN_TAIL requests above e_hi, or no lower neighbour above 0 ms).
    """
    above_lo, above_hi = np.asarray(above_lo, dtype=float), np.asarray(above_hi, dtype=float)
    ok = (above_hi >= MIN_TAIL) & (edge_lo > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = np.log(np.maximum(above_lo, 1.0) / np.maximum(above_hi, 1.0)) / np.log(edge_hi / max(edge_lo, 1e-300))
    return np.where(ok, np.maximum(slope, KAPPA_MIN), np.nan)


def edge_prior(prior_tau: float, kappa: FloatArray) -> FloatArray:
    """The prior bound at one latency edge: `prior_tau`·min(1, κ̂/KAPPA_REF); `prior_tau` where κ̂ is unknown."""
    kappa = np.asarray(kappa, dtype=float)
    return np.where(np.isnan(kappa), prior_tau, prior_tau * np.minimum(1.0, np.nan_to_num(kappa) / KAPPA_REF))


def edge_priors(prior_tau: float, edges: tuple[float, ...] | list[float], pooled_le: FloatArray,
                index: list[int]) -> FloatArray:
    """Prior bounds at the bucket edges `index` from pooled cumulative `le` counts [..., J+1] (last = all), [..., K].

    The pooled (canary + baseline) counts are what the conditional test conditions on, so a bound read off them keeps
    the exact validity on binomial data (docs/statistics-validity.md §2.1 and §8).
    """
    pooled_le = np.asarray(pooled_le, dtype=float)
    total = pooled_le[..., -1]
    out = []
    for j in index:
        if j == 0 or j + 1 >= len(edges):
            out.append(np.full(total.shape, float(prior_tau)))
            continue
        kappa = tail_slope(total - pooled_le[..., j - 1], total - pooled_le[..., j + 1], edges[j - 1], edges[j + 1])
        out.append(edge_prior(prior_tau, kappa))
    return np.stack(out, axis=-1)
