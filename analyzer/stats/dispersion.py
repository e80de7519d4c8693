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
    if prior_tau <= 0:
        out = np.full(TAU.size, -np.inf)
        out[0] = 0.0
        return out
    rate = -np.log(1.0 - LEVEL) / prior_tau
    edges = np.concatenate([[0.0], (TAU[1:] + TAU[:-1]) / 2, [TAU[-1] * 1.05]])
    mass = np.exp(-rate * edges[:-1]) - np.exp(-rate * edges[1:])
    mass[-1] += np.exp(-rate * edges[-1])  # the tail beyond the grid sits on its last point
    with np.errstate(divide="ignore"):
        return np.log(mass / mass.sum())


def tau2_upper(loglik: FloatArray, prior_tau: float) -> FloatArray:
    """Upper LEVEL quantile of τ² given the residual log-likelihood on the grid, [...] from [..., G_tau]."""
    post = loglik + prior_log_weights(prior_tau)
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
