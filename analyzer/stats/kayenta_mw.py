"""Kayenta's Mann–Whitney confidence interval, ported literally (`kayenta-mannwhitney`, peers.md §b.5).

Kayenta ports R's `wilcox.test(conf.int=TRUE, correct=TRUE)` normal approximation: the bounds and the estimate
are roots of the continuity- and tie-corrected Z(μ) − q, found by Brent's method (R's `zeroin`) with an
absolute tolerance of 1e-4 on [min(x) − max(y), max(x) − min(y)].

Where this differs from the exact answer, we follow Kayenta:
* Z(μ) is a step function, so its "root" is a jump at some pairwise difference x_i − y_j. Brent stops as soon
  as its bracket is narrower than ~1e-4, which is wider than the whole μ range on small-valued data (error
  ratios, latencies in seconds). The returned bound or estimate can then sit anywhere in that bracket, even
  on the wrong side of the jump (the lower bound can exceed the upper one); on zero-inflated data this moves
  the bounds across the tolerance band and changes the label (ClassifierSuite "High Metric (Large Input)").
* The normal quantile comes from scipy (Cephes `ndtri`) where Kayenta uses commons-math's `erfInv`; they
  agree to ~1e-16, far below the solver's tolerance.
"""

from __future__ import annotations

import bisect
import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]

DBL_EPSILON = 2.220446049250313e-16
BRENT_TOLERANCE = 1e-4  # R's uniroot(tol = 1e-4) in wilcox.test, kept by Kayenta
BRENT_MAX_ITERATIONS = 1000


@dataclass(frozen=True)
class MannWhitneyResult:
    confidence_interval: tuple[float, float]  # (lower, upper) for the shift x − y
    estimate: float  # Hodges–Lehmann-type estimate: the root of Z(μ) = 0


def brent_solve(
    lo: float,
    hi: float,
    f_lo: float,
    f_hi: float,
    func: Callable[[float], float],
    tol: float = BRENT_TOLERANCE,
    max_iterations: int = BRENT_MAX_ITERATIONS,
) -> float:
    """Kayenta's `BrentSolver.solve`: R's `zeroin` (Brent 1973, ch. 4) given the values at both ends.

    Kept step for step, including where it stops, because Kayenta's answers depend on it.
    """
    a, b, fa, fb = lo, hi, f_lo, f_hi
    c, fc = a, fa
    if fa == 0.0:
        return a
    if fb == 0.0:
        return b
    for _ in range(max_iterations + 1):
        prev_step = b - a
        if abs(fc) < abs(fb):  # make b the best approximation
            a, b, c = b, c, b
            fa, fb, fc = fb, fc, fb
        tol_act = 2 * DBL_EPSILON * abs(b) + tol / 2
        new_step = (c - b) / 2
        if abs(new_step) <= tol_act or fb == 0.0:
            return b
        if abs(prev_step) >= tol_act and abs(fa) > abs(fb):  # interpolation may be tried
            cb = c - b
            if a == c:  # two distinct points: linear interpolation
                t1 = fb / fa
                p = cb * t1
                q = 1.0 - t1
            else:  # inverse quadratic interpolation
                q = fa / fc
                t1 = fb / fc
                t2 = fb / fa
                p = t2 * (cb * q * (q - t1) - (b - a) * (t1 - 1.0))
                q = (q - 1.0) * (t1 - 1.0) * (t2 - 1.0)
            if p > 0.0:
                q = -q
            else:
                p = -p
            if p < (0.75 * cb * q - abs(tol_act * q) / 2) and p < abs(prev_step * q / 2):
                new_step = p / q
        if abs(new_step) < tol_act:
            new_step = tol_act if new_step > 0 else -tol_act
        a, fa = b, fb
        b += new_step
        fb = func(b)
        if (fb > 0 and fc > 0) or (fb < 0 and fc < 0):
            c, fc = a, fa
    return b


def wilcoxon_diff(mu: float, quantile: float, x: ArrayLike, y: ArrayLike) -> float:
    """Kayenta's `MannWhitney.wilcoxonDiff`: Z(μ) − quantile for the rank sum of x − μ against y.

    Raises ValueError when every pooled observation is tied (σ = 0), as Kayenta throws.
    """
    xa = np.sort(np.asarray(x, dtype=float))
    ya = np.sort(np.asarray(y, dtype=float))
    return _wilcoxon_diff_sorted(mu, quantile, xa, ya)


def _wilcoxon_diff_sorted(mu: float, quantile: float, xs: FloatArray, ys: FloatArray) -> float:
    # Same numbers as ranking the pooled sample with average ties, without the ranking: the x part's rank sum
    # is m(m+1)/2 plus, for each x − μ, the y values below it and half those equal to it. Every term is a
    # multiple of ½ far below 2^53, so the sums are exact and match Kayenta's bit for bit.
    x_len, y_len = float(xs.size), float(ys.size)
    xm = xs - mu  # the same rounding as Kayenta's x.map(_ - mu); monotone, so still sorted
    below = np.searchsorted(ys, xm, side="left")
    equal = np.searchsorted(ys, xm, side="right") - below
    dz = float(below.sum()) + 0.5 * float(equal.sum()) - x_len * y_len / 2
    correction = float(np.sign(dz)) * 0.5
    pooled = np.sort(np.concatenate((xm, ys)), kind="mergesort")
    starts = np.flatnonzero(np.concatenate(([True], pooled[1:] != pooled[:-1])))
    t = np.diff(np.append(starts, pooled.size)).astype(float)
    ties = float((t**3 - t).sum())
    sigma = np.sqrt((x_len * y_len / 12) * ((x_len + y_len + 1) - ties / ((x_len + y_len) * (x_len + y_len - 1))))
    if sigma == 0:
        raise ValueError("cannot compute confidence interval when all observations are tied")
    return float((dz - correction) / sigma - quantile)


class WilcoxonDiff:
    """`wilcoxon_diff` for fixed x and y, in O(log mn) per call and the same number bit for bit.

    Brent calls Z(μ) dozens of times per bound. Comparing x_i − μ with y_j in floating point gives the same answer
    as comparing the pairwise difference x_i − y_j with μ unless the two are within a few ulps; so the rank sum is
    a count in the sorted differences, and only the pairs that close to μ (the interval ends, a jump) are compared
    the way Kayenta does, which also tells which of them tie. Data whose distinct values are only ulps apart,
    or too many pairs to hold, fall back to ranking the pooled sample.
    """

    MAX_PAIRS = 4_000_000  # beyond this, skip the sorted differences (memory) and always rank

    def __init__(self, x: ArrayLike, y: ArrayLike) -> None:
        self.xs = np.sort(np.asarray(x, dtype=float))
        self.ys = np.sort(np.asarray(y, dtype=float))
        m, n = self.xs.size, self.ys.size
        self.x_len, self.y_len = float(m), float(n)
        self.diffs: FloatArray | None = None
        if not 0 < m * n <= self.MAX_PAIRS:
            return
        scale = 2 * (float(np.abs(self.xs).max()) + float(np.abs(self.ys).max()))
        if not np.isfinite(scale):
            return
        # |x − μ| ≤ scale for |μ| ≤ scale/2, so each rounding is below spacing(scale)/2: eps is a safe margin.
        self.eps = 4 * float(np.spacing(scale))
        self.mu_bound = scale / 2
        gaps = np.diff(np.unique(self.xs))
        if gaps.size and float(gaps.min()) <= 2 * self.eps:
            return  # distinct x values could merge in x − μ
        pairs = (self.xs[:, None] - self.ys[None, :]).ravel()
        self.order = np.argsort(pairs, kind="stable")
        self.diffs = pairs[self.order]
        self.sorted_diffs = self.diffs.tolist()  # bisect on a list beats numpy calls at this size
        self.ties = _tie_sum(self.xs) + _tie_sum(self.ys)
        self.sigma = self._sigma(self.ties)
        self.half_mn = self.x_len * self.y_len / 2

    def _sigma(self, ties: float) -> float:
        big = self.x_len + self.y_len
        return float(np.sqrt((self.x_len * self.y_len / 12) * ((big + 1) - ties / (big * (big - 1)))))

    def __call__(self, mu: float, quantile: float) -> float:
        if self.diffs is None or not abs(mu) <= self.mu_bound:
            return _wilcoxon_diff_sorted(mu, quantile, self.xs, self.ys)
        d = self.sorted_diffs
        lo = bisect.bisect_left(d, mu - self.eps)
        hi = bisect.bisect_right(d, mu + self.eps)
        above = float(len(d) - hi)  # pairs with x_i − μ > y_j for sure
        sigma = self.sigma
        if hi > lo:  # pairs within a few ulps of μ: compare them as Kayenta does
            n = self.ys.size
            idx = self.order[lo:hi]
            xi, yj = self.xs[idx // n], self.ys[idx % n]
            xm = xi - mu
            above += float(np.count_nonzero(xm > yj))
            equal = xm == yj
            if equal.any():
                above += 0.5 * float(np.count_nonzero(equal))
                ties = self.ties
                for xv, yv in set(zip(xi[equal].tolist(), yj[equal].tolist(), strict=True)):
                    a = float(np.count_nonzero(self.xs == xv))
                    b = float(np.count_nonzero(self.ys == yv))
                    ties += ((a + b) ** 3 - (a + b)) - (a**3 - a) - (b**3 - b)
                sigma = self._sigma(ties)
        if sigma == 0:
            raise ValueError("cannot compute confidence interval when all observations are tied")
        dz = above - self.half_mn
        correction = ((dz > 0) - (dz < 0)) * 0.5
        return (dz - correction) / sigma - quantile


@functools.lru_cache(maxsize=32)
def _normal_quantile(p: float) -> float:
    from scipy import stats  # here: only a Kayenta gate needs it, and scipy.stats costs the service ~50 MB

    return float(stats.norm.ppf(p))


def _tie_sum(values: FloatArray) -> float:
    _, t = np.unique(values, return_counts=True)
    t = t.astype(float)
    return float((t**3 - t).sum())


def mann_whitney_u_test(
    x: ArrayLike, y: ArrayLike, confidence_level: float = 0.95, mu: float = 0.0
) -> MannWhitneyResult:
    """Kayenta's `MannWhitney.mannWhitneyUTest(x, y, confidenceLevel, mu)`: CI and estimate for x − y.

    `mu` is accepted for parity; like Kayenta, the interval does not depend on it.
    """
    xa = np.sort(np.asarray(x, dtype=float))
    ya = np.sort(np.asarray(y, dtype=float))
    if xa.size == 0 or ya.size == 0:
        raise ValueError("both samples must be non-empty")
    alpha = 1.0 - confidence_level
    mu_min = float(xa[0] - ya[-1])
    mu_max = float(xa[-1] - ya[0])
    diff = WilcoxonDiff(xa, ya)

    def wrapper(zq: float) -> Callable[[float], float]:
        return lambda value: diff(value, zq)

    def find_root(zq: float) -> float:
        f_lower = diff(mu_min, zq)
        f_upper = diff(mu_max, zq)
        if f_lower <= 0:
            return mu_min
        if f_upper >= 0:
            return mu_max
        return brent_solve(mu_min, mu_max, f_lower, f_upper, wrapper(zq))

    z_quant = _normal_quantile(alpha / 2)
    interval = (find_root(-z_quant), find_root(z_quant))
    f_lower = diff(mu_min, 0.0)
    f_upper = diff(mu_max, 0.0)
    estimate = brent_solve(mu_min, mu_max, f_lower, f_upper, wrapper(0.0))
    return MannWhitneyResult(interval, estimate)
