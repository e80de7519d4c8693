"""Fixed-horizon (one-look) tests: for reports, post-hoc confirmation and benchmark baselines.

NOT valid under repeated looks (statistics.md §9 "Peeking"); the sequential gate lives elsewhere.
Results are frozen dataclasses with named fields, in the style of scipy.stats.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats

Alternative = Literal["greater", "less", "two-sided"]
FloatArray = NDArray[np.float64]


# ---- Mann–Whitney from bins (statistics.md §6.2) ----


@dataclass(frozen=True)
class MannWhitneyResult:
    statistic: float  # U of the canary sample: #{X_C > X_B} + ½ #{ties}
    auc: float  # U / (n_C n_B): P(X_C > X_B) + ½ P(tie), Kayenta's "CLES"
    zscore: float
    pvalue: float


def mann_whitney_z(canary_bins: ArrayLike, baseline_bins: ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Vectorised (U_C, Z) over leading axes of per-bin counts [..., K]; Z is NaN when the variance is 0."""
    c = np.asarray(canary_bins, dtype=float)
    b = np.asarray(baseline_bins, dtype=float)
    below = np.cumsum(b, axis=-1) - b  # baseline strictly below each bin
    u = (c * (below + b / 2)).sum(axis=-1)
    nc, nb = c.sum(axis=-1), b.sum(axis=-1)
    n = nc + nb
    t = c + b
    with np.errstate(divide="ignore", invalid="ignore"):
        ties = (t**3 - t).sum(axis=-1) / (n * (n - 1))
        var = nc * nb / 12 * ((n + 1) - ties)
        z = (u - nc * nb / 2) / np.sqrt(var)
    z = np.where(var > 0, z, np.nan)
    return u, z


def _p_from_z(z: FloatArray | float, alternative: Alternative) -> FloatArray:
    z = np.asarray(z, dtype=float)
    if alternative == "greater":
        return stats.norm.sf(z)
    if alternative == "less":
        return stats.norm.cdf(z)
    return np.minimum(1.0, 2 * stats.norm.sf(np.abs(z)))


def mann_whitney_bins(
    canary_bins: ArrayLike, baseline_bins: ArrayLike, alternative: Alternative = "greater"
) -> MannWhitneyResult:
    """Asymptotic MW U test from bin counts, tie-corrected, no continuity correction.

    Equals `scipy.stats.mannwhitneyu(canary, baseline, method='asymptotic', use_continuity=False)` on the
    expanded data (every value in a bin is a tie). 'greater' = canary stochastically larger (slower).
    """
    c = np.asarray(canary_bins, dtype=float)
    b = np.asarray(baseline_bins, dtype=float)
    if c.ndim != 1 or c.shape != b.shape:
        raise ValueError("need two 1-D bin count arrays of the same length")
    u, z = mann_whitney_z(c, b)
    denom = c.sum() * b.sum()
    auc = float(u / denom) if denom > 0 else float("nan")
    return MannWhitneyResult(float(u), auc, float(z), float(_p_from_z(z, alternative)))


# ---- two-sample counts (statistics.md §6.1) ----


@dataclass(frozen=True)
class RateRatioResult:
    statistic: int  # canary events x
    events: int  # total events m
    share: float  # rho = n_C / (n_C + n_B), the canary exposure share
    pvalue: float
    ratio: float  # point estimate of theta = p_C / p_B
    ci: tuple[float, float]  # Clopper–Pearson-based CI for theta


def conditional_binomial(
    e_c: int, n_c: int, e_b: int, n_b: int, alternative: Alternative = "greater", confidence: float = 0.95
) -> RateRatioResult:
    """Conditional binomial test of the rate ratio: x | m ~ Bin(m, rho) under theta = 1."""
    if n_c <= 0 or n_b <= 0:
        raise ValueError("both arms need exposure")
    m = int(e_c + e_b)
    rho = n_c / (n_c + n_b)
    if m == 0:
        return RateRatioResult(int(e_c), 0, rho, 1.0, float("nan"), (0.0, float("inf")))
    p = stats.binomtest(int(e_c), m, rho, alternative=alternative).pvalue
    ci = clopper_pearson(int(e_c), m, confidence)

    def theta(qv: float) -> float:
        # theta = q(1−rho)/(rho(1−q)); q = 1 maps to +inf
        return float("inf") if qv >= 1 else qv * (1 - rho) / (rho * (1 - qv))

    return RateRatioResult(int(e_c), m, rho, float(p), theta(e_c / m), (theta(ci.low), theta(ci.high)))


def conditional_binomial_p(
    e_c: ArrayLike, n_c: ArrayLike, e_b: ArrayLike, n_b: ArrayLike
) -> FloatArray:
    """Vectorised one-sided ('greater') conditional binomial p-values; 1 where there are no events/exposure."""
    x = np.asarray(e_c, dtype=float)
    m = x + np.asarray(e_b, dtype=float)
    nc = np.asarray(n_c, dtype=float)
    tot = nc + np.asarray(n_b, dtype=float)
    ok = (m > 0) & (tot > 0)
    rho = np.where(ok, nc / np.where(tot > 0, tot, 1.0), 0.5)
    p = stats.binom.sf(x - 1, np.where(ok, m, 1), rho)
    return np.where(ok, p, 1.0)


def fisher_greater_p(e_c: ArrayLike, n_c: ArrayLike, e_b: ArrayLike, n_b: ArrayLike) -> FloatArray:
    """Vectorised one-sided Fisher exact p-values (canary error proportion greater), via the hypergeometric."""
    x = np.asarray(e_c, dtype=np.int64)
    nc = np.asarray(n_c, dtype=np.int64)
    total = nc + np.asarray(n_b, dtype=np.int64)
    events = x + np.asarray(e_b, dtype=np.int64)
    ok = (events > 0) & (total > 0)
    p = stats.hypergeom.sf(x - 1, np.where(ok, total, 1), np.where(ok, events, 0), np.where(ok, nc, 0))
    return np.where(ok, p, 1.0)


@dataclass(frozen=True)
class ExactTestResult:
    statistic: float
    pvalue: float


def fisher_exact(e_c: int, n_c: int, e_b: int, n_b: int, alternative: Alternative = "greater") -> ExactTestResult:
    """Fisher's exact test on [[e_C, n_C−e_C], [e_B, n_B−e_B]] (statistic = odds ratio)."""
    r = stats.fisher_exact([[e_c, n_c - e_c], [e_b, n_b - e_b]], alternative=alternative)
    return ExactTestResult(float(r.statistic), float(r.pvalue))


def boschloo(
    e_c: int, n_c: int, e_b: int, n_b: int, alternative: Alternative = "greater", n: int = 32
) -> ExactTestResult:
    """Boschloo's unconditional exact test (scipy); more powerful than Fisher, slow for large tables."""
    r = stats.boschloo_exact([[e_c, e_b], [n_c - e_c, n_b - e_b]], alternative=alternative, n=n)
    return ExactTestResult(float(r.statistic), float(r.pvalue))


# ---- KS on bins with a permutation null (statistics.md §6.4) ----


@dataclass(frozen=True)
class KSResult:
    statistic: float  # max_j |F_C(tau_j) − F_B(tau_j)|
    pvalue: float
    n_resamples: int


def _ks_stat(c: FloatArray, b: FloatArray) -> FloatArray:
    fc = np.cumsum(c, axis=-1) / c.sum(axis=-1, keepdims=True)
    fb = np.cumsum(b, axis=-1) / b.sum(axis=-1, keepdims=True)
    return np.abs(fc - fb).max(axis=-1)


def ks_bins(
    canary_bins: ArrayLike, baseline_bins: ArrayLike, n_resamples: int = 999, seed: int | None = 0
) -> KSResult:
    """Two-sample KS at the bucket edges; exact-in-distribution permutation null by relabelling within bins."""
    c = np.asarray(canary_bins, dtype=np.int64)
    b = np.asarray(baseline_bins, dtype=np.int64)
    if c.sum() == 0 or b.sum() == 0:
        return KSResult(float("nan"), 1.0, 0)
    t = c + b
    obs = float(_ks_stat(c.astype(float), b.astype(float)))
    rng = np.random.default_rng(seed)
    # Under exchangeability the canary bins are a multivariate hypergeometric draw of size n_C from the pooled bins.
    sim_c = rng.multivariate_hypergeometric(t, int(c.sum()), size=n_resamples).astype(float)
    sim = _ks_stat(sim_c, t - sim_c)
    p = (1 + np.count_nonzero(sim >= obs - 1e-12)) / (n_resamples + 1)
    return KSResult(obs, float(p), n_resamples)


# ---- Hodges–Lehmann shift (statistics.md §6.5) ----


@dataclass(frozen=True)
class HodgesLehmannResult:
    estimate: float  # median of pairwise differences x_i − y_j
    low: float
    high: float
    confidence: float


def hodges_lehmann(x: ArrayLike, y: ArrayLike, confidence: float = 0.95) -> HodgesLehmannResult:
    """HL shift of x over y with the distribution-free order-statistic CI (no-ties formula)."""
    xa = np.asarray(x, dtype=float)
    ya = np.asarray(y, dtype=float)
    m, n = xa.size, ya.size
    if m == 0 or n == 0:
        raise ValueError("both samples must be non-empty")
    d = np.sort((xa[:, None] - ya[None, :]).ravel())
    mn = m * n
    z = stats.norm.ppf(1 - (1 - confidence) / 2)
    k = int(np.floor(mn / 2 - z * np.sqrt(mn * (m + n + 1) / 12)))
    k = min(max(k, 1), mn)  # too few pairs for the level: fall back to the full range
    return HodgesLehmannResult(float(np.median(d)), float(d[k - 1]), float(d[mn - k]), confidence)


# ---- multiple testing (statistics.md §6.6) ----


def holm(pvalues: ArrayLike) -> FloatArray:
    """Holm step-down adjusted p-values (reject where adjusted ≤ alpha), in the input order."""
    p = np.asarray(pvalues, dtype=float)
    m = p.size
    order = np.argsort(p, kind="stable")
    adj_sorted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out = np.empty(m)
    out[order] = adj_sorted
    return out


def benjamini_hochberg(pvalues: ArrayLike) -> FloatArray:
    """Benjamini–Hochberg step-up adjusted p-values (FDR), in the input order."""
    p = np.asarray(pvalues, dtype=float)
    m = p.size
    order = np.argsort(p, kind="stable")
    scaled = p[order] * m / np.arange(1, m + 1)
    adj_sorted = np.minimum(1.0, np.minimum.accumulate(scaled[::-1])[::-1])
    out = np.empty(m)
    out[order] = adj_sorted
    return out


# ---- binomial interval ----


@dataclass(frozen=True)
class Interval:
    low: float
    high: float


def clopper_pearson(k: int, n: int, confidence: float = 0.95) -> Interval:
    """Exact (Clopper–Pearson) two-sided interval for a binomial proportion."""
    if n <= 0 or not 0 <= k <= n:
        raise ValueError("need 0 <= k <= n and n > 0")
    a = 1 - confidence
    low = 0.0 if k == 0 else float(stats.beta.ppf(a / 2, k, n - k + 1))
    high = 1.0 if k == n else float(stats.beta.ppf(1 - a / 2, k + 1, n - k))
    return Interval(low, high)
