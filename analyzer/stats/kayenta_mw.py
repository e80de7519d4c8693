"""Mann–Whitney confidence interval for a location shift, as Kayenta ports R's
`wilcox.test(conf.int=TRUE, correct=TRUE)` normal approximation (peers.md §b.5).

Z(μ) is a non-increasing step function of μ that jumps only at pairwise differences x_i − y_j, so instead of
running Brent's method on it we locate the jump where Z crosses q directly; Brent converges to that same jump.
`mw_interval_brent` keeps the literal root-finding port as a reference.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import optimize, stats

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class MWInterval:
    lower: float  # L: root of Z(μ) = +z
    upper: float  # U: root of Z(μ) = −z
    estimate: float  # Ĥ: root of Z(μ) = 0 (Hodges–Lehmann-type)


def _tie_term(values: FloatArray) -> float:
    _, t = np.unique(values, return_counts=True)
    return float((t.astype(float) ** 3 - t).sum())


def z_at(x: FloatArray, y: FloatArray, mu: float) -> float:
    """Continuity-corrected, tie-corrected Z of the rank sum of x − μ against y."""
    m, n = x.size, y.size
    pooled = np.concatenate((x - mu, y))
    ranks = stats.rankdata(pooled)
    d = ranks[:m].sum() - m * (m + 1) / 2 - m * n / 2
    big = m + n
    sigma2 = m * n / 12 * ((big + 1) - _tie_term(pooled) / (big * (big - 1)))
    if sigma2 <= 0:
        raise ZeroDivisionError("Mann–Whitney variance is 0 (all observations tied)")
    return float((d - 0.5 * np.sign(d)) / np.sqrt(sigma2))


@functools.lru_cache(maxsize=16)
def _critical(confidence: float) -> float:
    return float(abs(stats.norm.ppf((1 - confidence) / 2)))


def _count(values: FloatArray, v: float) -> int:
    return int(np.count_nonzero(values == v))


def _z_at_edge(u: float, m: int, n: int, ties: float, a: int, b: int) -> float:
    """Z at μmin or μmax, where exactly a x-values (x − μ) tie b y-values in one merged group."""
    big = m + n
    ties = ties - (a**3 - a) - (b**3 - b) + ((a + b) ** 3 - (a + b))
    sigma2 = m * n / 12 * ((big + 1) - ties / (big * (big - 1)))
    if sigma2 <= 0:
        raise ZeroDivisionError("Mann–Whitney variance is 0 (all observations tied)")
    d = u - m * n / 2
    return float((d - 0.5 * np.sign(d)) / np.sqrt(sigma2))


def mw_interval(x: ArrayLike, y: ArrayLike, confidence: float = 0.98) -> MWInterval:
    """L, U and Ĥ for the shift Δ = x − y, with the port's edge rules for L and U."""
    xa = np.asarray(x, dtype=float)
    ya = np.asarray(y, dtype=float)
    m, n = xa.size, ya.size
    if m == 0 or n == 0:
        raise ValueError("both samples must be non-empty")
    big = m + n
    # Between jumps only within-sample ties exist, so σ is constant there.
    ties = _tie_term(xa) + _tie_term(ya)
    sigma2 = m * n / 12 * ((big + 1) - ties / (big * (big - 1)))
    if sigma2 <= 0:
        raise ZeroDivisionError("Mann–Whitney variance is 0 (all observations tied)")
    sigma = np.sqrt(sigma2)
    jumps, mult = np.unique((xa[:, None] - ya[None, :]).ravel(), return_counts=True)
    # Z on the open interval right of jumps[k]: U = #{d > μ}.
    u_right = m * n - np.cumsum(mult)
    d_right = u_right - m * n / 2
    z_right = (d_right - 0.5 * np.sign(d_right)) / sigma

    def root(q: float) -> float:
        # First jump after which Z ≤ q; Z is non-increasing, so this is where Z − q changes sign.
        k = int(np.searchsorted(-z_right, -q, side="left"))
        if k >= jumps.size:  # Z never reaches q: cannot happen on a bounded sample, keep the top
            return float(jumps[-1])
        if z_right[k] < q:
            return float(jumps[k])
        # Z == q on a whole interval: the root is anywhere on it; take its middle.
        end = int(np.searchsorted(-z_right, -q, side="right"))
        right = jumps[end] if end < jumps.size else jumps[-1]
        return float((jumps[k] + right) / 2)

    zc = _critical(confidence)
    mu_min, mu_max = float(jumps[0]), float(jumps[-1])
    # At the ends only (min x, max y), resp. (max x, min y), tie across samples; U counts those pairs as ½.
    x_lo, x_hi, y_lo, y_hi = xa.min(), xa.max(), ya.min(), ya.max()
    z_min = _z_at_edge(m * n - mult[0] / 2, m, n, ties, _count(xa, x_lo), _count(ya, y_hi))
    z_max = _z_at_edge(mult[-1] / 2, m, n, ties, _count(xa, x_hi), _count(ya, y_lo))
    lower = mu_min if z_min - zc <= 0 else root(zc)
    upper = mu_max if z_max + zc >= 0 else root(-zc)
    return MWInterval(lower, upper, root(0.0))


def mw_interval_brent(x: ArrayLike, y: ArrayLike, confidence: float = 0.98) -> MWInterval:
    """Literal port: Brent's method on Z(μ) − q over [min(x) − max(y), max(x) − min(y)] (slow; for tests)."""
    xa = np.asarray(x, dtype=float)
    ya = np.asarray(y, dtype=float)
    mu_min, mu_max = float(xa.min() - ya.max()), float(xa.max() - ya.min())
    zc = _critical(confidence)

    def solve(q: float, edges: bool) -> float:
        def f(mu: float) -> float:
            return z_at(xa, ya, mu) - q

        if edges:
            if f(mu_min) <= 0:
                return mu_min
            if f(mu_max) >= 0:
                return mu_max
        return float(optimize.brentq(f, mu_min, mu_max, xtol=1e-10))

    return MWInterval(solve(zc, True), solve(-zc, True), solve(0.0, False))
