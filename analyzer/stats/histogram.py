"""Pure helpers on cumulative Prometheus `le` bucket counts.

Conventions: `edges` holds the J finite upper bounds in increasing order; a cumulative count array has J+1
entries on its last axis, the last one being `le="+Inf"` (the total). Leading axes (e.g. time) broadcast.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import special

FloatArray = NDArray[np.float64]


def _cum(cum_le: ArrayLike) -> FloatArray:
    cum = np.asarray(cum_le, dtype=float)
    if cum.ndim == 0:
        raise ValueError("cumulative counts need at least one axis")
    return cum


def bin_counts(cum_le: ArrayLike) -> FloatArray:
    """Per-bucket counts from cumulative ones: bin j holds (edges[j-1], edges[j]]; the last bin is (edges[-1], +Inf)."""
    cum = _cum(cum_le)
    return np.diff(cum, axis=-1, prepend=0.0)


def cumulative(bins: ArrayLike) -> FloatArray:
    """Inverse of `bin_counts`."""
    return np.cumsum(np.asarray(bins, dtype=float), axis=-1)


def exceedances(cum_le: ArrayLike) -> FloatArray:
    """Observations strictly above each finite edge: total − cum[j], shape [..., J]."""
    cum = _cum(cum_le)
    return cum[..., -1:] - cum[..., :-1]


def histogram_quantile(q: float, edges: ArrayLike, cum_le: ArrayLike) -> FloatArray | float:
    """Prometheus `histogram_quantile` (promql/quantile.go `bucketQuantile`) on classic buckets.

    Linear interpolation inside the bucket holding rank q·total; the lowest bucket starts at 0 (unless its bound
    is ≤ 0, then that bound is returned); a rank in the +Inf bucket returns the highest finite bound; NaN for 0
    observations or fewer than 2 buckets. Non-monotonic counts are forced monotonic, as Prometheus does.
    Returns a float for one histogram, an array for a stack of them.
    """
    e = np.asarray(edges, dtype=float)
    cum = np.maximum.accumulate(_cum(cum_le), axis=-1)
    if cum.shape[-1] != e.size + 1:
        raise ValueError(f"need {e.size + 1} cumulative counts (J edges + Inf), got {cum.shape[-1]}")
    shape = cum.shape[:-1]
    if np.isnan(q):
        out = np.full(shape, np.nan)
    elif q < 0 or q > 1:
        out = np.full(shape, -np.inf if q < 0 else np.inf)
    elif e.size == 0:
        out = np.full(shape, np.nan)
    else:
        out = _bucket_quantile(q, e, cum)
    return float(out) if out.ndim == 0 else out


def _bucket_quantile(q: float, e: FloatArray, cum: FloatArray) -> FloatArray:
    j = e.size
    total = cum[..., -1]
    rank = q * total
    # sort.Search over the finite buckets: first with count >= rank, else the +Inf bucket (index J).
    hit = cum[..., :j] >= rank[..., None]
    b = np.where(hit.any(axis=-1), hit.argmax(axis=-1), j)
    bi = np.minimum(b, j - 1)
    end = e[bi]
    start = np.where(b > 0, e[np.maximum(bi - 1, 0)], 0.0)
    below = np.where(b > 0, np.take_along_axis(cum, np.maximum(bi - 1, 0)[..., None], axis=-1)[..., 0], 0.0)
    count = np.take_along_axis(cum, bi[..., None], axis=-1)[..., 0] - below
    with np.errstate(divide="ignore", invalid="ignore"):
        out = start + (end - start) * ((rank - below) / count)
    out = np.where(b == j, e[-1], out)
    out = np.where((b == 0) & (e[0] <= 0), e[0], out)
    return np.where(total == 0, np.nan, out)


def histogram_mean(total_sum: ArrayLike, count: ArrayLike) -> FloatArray | float:
    """`rate(_sum)/rate(_count)`: the mean, NaN where there are no observations."""
    s = np.asarray(total_sum, dtype=float)
    c = np.asarray(count, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(c > 0, s / np.where(c > 0, c, 1.0), np.nan)
    return float(out) if out.ndim == 0 else out


def binned_mean(edges: ArrayLike, cum_le: ArrayLike) -> FloatArray | float:
    """Mean from bucket midpoints when `_sum` is unavailable (first bin from 0, +Inf bin at the top edge)."""
    e = np.asarray(edges, dtype=float)
    lows = np.concatenate(([0.0], e))
    highs = np.concatenate((e, e[-1:]))
    bins = bin_counts(cum_le)
    return histogram_mean((bins * (lows + highs) / 2).sum(axis=-1), bins.sum(axis=-1))


@dataclass(frozen=True)
class QuantileInterval:
    """A histogram quantile estimate with a distribution-free interval mapped to bucket edges.

    `low`/`high` are bucket edges: the true quantile lies in [low, high] with probability ≥ `confidence`
    (0 and +Inf stand for "unbounded" on either side). `estimate` is the Prometheus interpolation.
    """

    q: float
    estimate: float
    low: float
    high: float
    low_rank: int  # order statistic index (1-based) that bounds from below; 0 = none
    high_rank: int  # order statistic index (1-based) that bounds from above; n+1 = none
    n: int
    confidence: float


def _binom_ppf(p: ArrayLike, n: int, q: ArrayLike) -> NDArray[np.int64]:
    """scipy.stats.binom.ppf (smallest k with P(B <= k) >= p), elementwise over p and q, from the continuous
    inverse `bdtrik` and a check of its integer neighbours: a few ufunc calls instead of scipy's root search."""
    p, q = np.broadcast_arrays(np.asarray(p, dtype=float), np.asarray(q, dtype=float))
    x = special.bdtrik(p, n, q)
    guess = np.where(np.isfinite(x), np.clip(np.floor(np.nan_to_num(x)), 0, n), 0).astype(np.int64)
    ks = np.clip(guess[..., None] + np.arange(-2, 3), 0, n)
    ok = special.bdtr(ks, n, q[..., None]) >= p[..., None]
    first = np.take_along_axis(ks, ok.argmax(axis=-1)[..., None], axis=-1)[..., 0]
    return np.where(ok.any(axis=-1), first, n)


def quantile_interval(q: float, edges: ArrayLike, cum_le: ArrayLike, confidence: float = 0.95) -> QuantileInterval:
    """Order-statistic binomial CI [X_(l), X_(u)] for the q-quantile, widened to the enclosing bucket edges.

    #{X ≤ ξ_q} ~ Bin(n, q), so P(X_(l) ≤ ξ_q ≤ X_(u)) ≥ P(l ≤ B ≤ u−1) ≥ confidence for the chosen l, u.
    X_(l) lies in a bucket (a, b], so `a` is a valid lower bound; likewise the upper edge of X_(u)'s bucket.
    """
    return quantile_intervals((q,), edges, cum_le, confidence)[0]


def quantile_intervals(qs: Sequence[float], edges: ArrayLike, cum_le: ArrayLike,
                       confidence: float = 0.95) -> tuple[QuantileInterval, ...]:
    """`quantile_interval` for several quantiles of one histogram in one pass (the judge asks for three a tick)."""
    if not all(0 < q < 1 for q in qs):
        raise ValueError("q must be in (0, 1)")
    e = np.asarray(edges, dtype=float)
    cum = np.maximum.accumulate(_cum(cum_le), axis=-1)
    if cum.ndim != 1:
        raise ValueError("quantile_interval takes one histogram")
    n = int(np.rint(cum[-1]))
    if n == 0:
        return tuple(QuantileInterval(q, float("nan"), 0.0, float("inf"), 0, 1, 0, confidence) for q in qs)
    qv = np.asarray(qs, dtype=float)
    est = _bucket_quantile(qv, e, np.broadcast_to(cum, (qv.size, cum.size))) if e.size else np.full(qv.size, np.nan)
    a = 1.0 - confidence
    lo_rank = _binom_ppf(a / 2, n, qv)  # P(B ≤ lo_rank − 1) < a/2
    hi_rank = _binom_ppf(1 - a / 2, n, qv) + 1  # P(B ≥ hi_rank) ≤ a/2
    lows = np.concatenate(([0.0], e))
    highs = np.concatenate((e, [np.inf]))
    low = np.where(lo_rank < 1, 0.0, lows[np.searchsorted(cum, lo_rank, side="left").clip(max=e.size)])
    high = np.where(hi_rank > n, np.inf, highs[np.searchsorted(cum, hi_rank, side="left").clip(max=e.size)])
    return tuple(QuantileInterval(float(q), float(est[i]), float(low[i]), float(high[i]), max(int(lo_rank[i]), 0),
                                  int(hi_rank[i]), n, confidence) for i, q in enumerate(qs))
