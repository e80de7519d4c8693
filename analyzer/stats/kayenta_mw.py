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

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats

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
    xa = np.asarray(x, dtype=float)
    ya = np.asarray(y, dtype=float)
    x_len, y_len = float(xa.size), float(ya.size)
    pooled = np.concatenate((xa - mu, ya))
    ranks = stats.rankdata(pooled, method="average")
    dz = float(ranks[: xa.size].sum()) - x_len * (x_len + 1) / 2 - x_len * y_len / 2
    correction = float(np.sign(dz)) * 0.5
    _, t = np.unique(ranks, return_counts=True)
    ties = float((t.astype(float) ** 3 - t).sum())
    sigma = np.sqrt((x_len * y_len / 12) * ((x_len + y_len + 1) - ties / ((x_len + y_len) * (x_len + y_len - 1))))
    if sigma == 0:
        raise ValueError("cannot compute confidence interval when all observations are tied")
    return float((dz - correction) / sigma - quantile)


def mann_whitney_u_test(
    x: ArrayLike, y: ArrayLike, confidence_level: float = 0.95, mu: float = 0.0
) -> MannWhitneyResult:
    """Kayenta's `MannWhitney.mannWhitneyUTest(x, y, confidenceLevel, mu)`: CI and estimate for x − y.

    `mu` is accepted for parity; like Kayenta, the interval does not depend on it.
    """
    xa = np.asarray(x, dtype=float)
    ya = np.asarray(y, dtype=float)
    if xa.size == 0 or ya.size == 0:
        raise ValueError("both samples must be non-empty")
    alpha = 1.0 - confidence_level
    mu_min = float(xa.min() - ya.max())
    mu_max = float(xa.max() - ya.min())

    def wrapper(zq: float) -> Callable[[float], float]:
        return lambda value: wilcoxon_diff(value, zq, xa, ya)

    def find_root(zq: float) -> float:
        f_lower = wilcoxon_diff(mu_min, zq, xa, ya)
        f_upper = wilcoxon_diff(mu_max, zq, xa, ya)
        if f_lower <= 0:
            return mu_min
        if f_upper >= 0:
            return mu_max
        return brent_solve(mu_min, mu_max, f_lower, f_upper, wrapper(zq))

    z_quant = float(stats.norm.ppf(alpha / 2))
    interval = (find_root(-z_quant), find_root(z_quant))
    f_lower = wilcoxon_diff(mu_min, 0, xa, ya)
    f_upper = wilcoxon_diff(mu_max, 0, xa, ya)
    estimate = brent_solve(mu_min, mu_max, f_lower, f_upper, wrapper(0.0))
    return MannWhitneyResult(interval, estimate)
