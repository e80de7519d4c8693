"""Fixed-horizon two-sample tests for span samples (statistics.md §6.1, §6.5, §6.6)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# Above this many pairwise differences the HL estimate uses a fixed random subsample of pairs (§6.5).
MAX_PAIRS = 1_000_000


@dataclass(frozen=True)
class Shift:
    """Multiplicative canary/baseline shift: exp(HL of log durations), its CI, and a one-sided MW p."""

    factor: float
    ci: tuple[float, float]
    p_value: float  # H1: canary durations stochastically larger


def hodges_lehmann_log(canary: np.ndarray, baseline: np.ndarray, *, alpha: float = 0.05) -> Shift:
    """HL shift on log values with the distribution-free CI D_(k)..D_(mn+1-k) (no-ties formula)."""
    x, y = np.log(np.asarray(canary, float)), np.log(np.asarray(baseline, float))
    m, n = x.size, y.size
    if m * n <= MAX_PAIRS:
        diffs = np.sort(np.subtract.outer(x, y).ravel())
    else:
        rng = np.random.default_rng(0)  # fixed: the same data must give the same report
        diffs = np.sort(x[rng.integers(0, m, MAX_PAIRS)] - y[rng.integers(0, n, MAX_PAIRS)])
    mn = m * n
    from scipy import stats  # here, not at the top: the daemon's ticks never need scipy.stats (~50 MB)

    z = stats.norm.ppf(1 - alpha / 2)
    k = max(1, math.floor(mn / 2 - z * math.sqrt(mn * (m + n + 1) / 12)))
    # Positions k and mn+1-k (1-based) as quantiles, so a subsample of pairs maps onto them too.
    lo_q, hi_q = (k - 1) / max(mn - 1, 1), (mn - k) / max(mn - 1, 1)
    lo, hi = np.quantile(diffs, [lo_q, hi_q])
    p = stats.mannwhitneyu(x, y, alternative="greater").pvalue
    return Shift(float(np.exp(np.median(diffs))), (float(np.exp(lo)), float(np.exp(hi))), float(p))


@dataclass(frozen=True)
class RateRatio:
    """Canary/baseline error-rate ratio from the conditional binomial test (Poisson rate ratio)."""

    ratio: float
    ci: tuple[float, float]
    p_value: float  # H1: canary rate higher


def _theta(q: float, rho: float) -> float:
    if q >= 1.0:
        return math.inf
    return q * (1 - rho) / (rho * (1 - q))


def error_ratio(e_c: int, n_c: int, e_b: int, n_b: int, *, alpha: float = 0.05) -> RateRatio:
    """x = e_c of E = e_c + e_b is Bin(E, rho) under equal rates, rho = n_c / (n_c + n_b)."""
    from scipy import stats

    rho, total = n_c / (n_c + n_b), e_c + e_b
    if total == 0:
        return RateRatio(1.0, (0.0, math.inf), 1.0)
    test = stats.binomtest(e_c, total, rho, alternative="greater")
    ci = stats.binomtest(e_c, total, rho).proportion_ci(confidence_level=1 - alpha, method="exact")
    return RateRatio(_theta(e_c / total, rho), (_theta(ci.low, rho), _theta(ci.high, rho)), float(test.pvalue))


def counts_greater(canary: np.ndarray, baseline: np.ndarray) -> float:
    """One-sided MW p for per-trace call counts (many ties; asymptotic with tie correction)."""
    from scipy import stats

    if np.ptp(np.concatenate([canary, baseline])) == 0:
        return 1.0
    return float(stats.mannwhitneyu(canary, baseline, alternative="greater", method="asymptotic").pvalue)


def presence_greater(k_c: int, n_c: int, k_b: int, n_b: int) -> float:
    """Fisher exact, one-sided: a call is present in more canary traces than baseline traces."""
    from scipy import stats

    return float(stats.fisher_exact([[k_c, n_c - k_c], [k_b, n_b - k_b]], alternative="greater").pvalue)


def bh_reject(p_values: list[float], alpha: float) -> list[bool]:
    """Benjamini–Hochberg at level alpha (diagnostic scan across operations, §6.6)."""
    from scipy import stats

    if not p_values:
        return []
    adjusted = stats.false_discovery_control(np.asarray(p_values, float), method="bh")
    return [bool(a <= alpha) for a in adjusted]
