"""Vectorised open-loop rollouts for the §10 benchmark: per-interval counts for R replicates at once.

Every method sees the same arrays. Window t (0-based) covers minute [t, t+1). Shapes: [R, T] for requests and
errors, [R, T, J+1] for cumulative `le` counts (last = +Inf) over the Istio default edges.

Model per replicate and minute (statistics.md §10.1):
* total requests ~ Poisson(60·rps·(1 + 0.5·sin(2π(φ + t)/1440))), φ a random time of day; per-request routing
  with the weight schedule (canary share w_t), the baseline is the primary (the rest of the traffic);
* error rates p_B,t = p_B·shock_t, p_C,t = p_B·shock_t·ratio_t·noise_t with a shared log-normal shock (mean 1),
  canary-only log-normal over-dispersion noise (mean 1), ratio_t = 1 + (θ−1)·effect_t (onset, linear leak ramp);
* latency lognormal (median 50 ms, σ 0.5), canary × scale_t (regression and warm-up), optional tail share + tail_ms;
  bucket counts are multinomial over the exact bucket probabilities (`analyzer.sim.mesh.latency_cdf`);
* per-pod cells (issue 9): each subset's requests split evenly at random across its pods, each pod with a
  per-minute log-normal (mean 1) effect on its error rate and on its latency median;
* telemetry gaps: minutes with no data for either subset (all observed counts 0, `has_data` False);
* counter resets: each subset is served by two pods; the canary's first pod restarts once, losing the increments
  of that minute before the restart; the per-pod cumulative counters are differenced with the ingestion code
  (`analyzer.stats.counters.series_deltas`) and then summed across pods, as the Prometheus source does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from analyzer.model import ISTIO_DEFAULT_EDGES_MS
from analyzer.sim.mesh import latency_cdf
from analyzer.sim.scenario import Latency
from analyzer.stats.counters import series_deltas
from benchmarks.methods import RunData

IntArray = NDArray[np.int64]
FloatArray = NDArray[np.float64]
EDGES = np.asarray(ISTIO_DEFAULT_EDGES_MS, dtype=float)
SLO_MS = 500.0
RAMP = (0.1, 0.2, 0.3, 0.4, 0.5)  # Flagger-style ramp: +10% every 5 minutes up to 50%


@dataclass(frozen=True)
class Cell:
    """One benchmark cell: a traffic level, a baseline and a canary effect, plus robustness factors."""

    name: str
    group: str  # "errors", "latency" or "robustness"
    rps: float
    p_b: float
    theta: float = 1.0  # canary/baseline error ratio at full effect
    lat_scale: float = 1.0  # multiplicative canary slowdown at full effect
    tail_share: float = 0.0  # share of canary requests getting +tail_ms
    tail_ms: float = 500.0
    within_bucket: bool = False  # a slowdown that stays inside (100, 250] ms: bucket probabilities unchanged
    weights: str = "10"  # "10", "50" (constant %) or "ramp" (10 → 50% in 10% steps every 5 min)
    shock_sigma: float = 0.0
    overdispersion: float = 0.0
    warmup_factor: float = 1.0  # canary latency × factor at start, decaying linearly to 1
    warmup_minutes: int = 0  # also the warm-up our gate and Kayenta exclude
    onset: int = 0  # minute the regression starts
    leak_minutes: int = 0  # linear ramp of the effect after the onset
    gap_share: float = 0.0  # probability a minute has no telemetry
    gap_block: tuple[int, int] | None = None  # a contiguous outage of the metrics source [start, end)
    counter_reset: bool = False
    # Pods (issue 9): requests split evenly at random across each subset's pods; each pod has a per-minute
    # log-normal (mean 1) effect on its error rate and on its latency (every duration scaled by one factor).
    pods_c: int = 1
    pods_b: int = 1
    pod_error_sigma: float = 0.0
    pod_latency_sigma: float = 0.0
    median_ms: float = 50.0
    sigma: float = 0.5
    horizon: int = 60
    replicates: int = 1000
    kayenta_replicates: int = 100
    seed: int = 0

    @property
    def latency(self) -> Latency:
        return Latency(median_ms=self.median_ms, sigma=self.sigma)

    @property
    def null(self) -> bool:
        """No effect visible in the data the methods get (the within-bucket shift is invisible by design)."""
        errors_same = self.theta == 1.0 or self.p_b == 0.0
        latency_same = self.lat_scale == 1.0 and self.tail_share == 0.0
        return errors_same and latency_same

    @property
    def kind(self) -> str:
        if self.within_bucket:
            return "within-bucket"
        if self.tail_share > 0:
            return "tail"
        if self.lat_scale != 1.0:
            return "latency"
        if self.theta != 1.0 and self.p_b > 0:
            return "errors"
        return "A/A"

    @property
    def per_pod(self) -> bool:
        return max(self.pods_c, self.pods_b) > 1 or self.pod_error_sigma > 0 or self.pod_latency_sigma > 0

    def weight_schedule(self) -> FloatArray:
        t = np.arange(self.horizon)
        if self.weights == "ramp":
            return np.asarray(RAMP)[np.minimum(t // 5, len(RAMP) - 1)]
        return np.full(self.horizon, float(self.weights) / 100.0)

    def effect(self) -> FloatArray:
        """0 before the onset, ramping linearly to 1 over `leak_minutes` (evaluated at mid-minute)."""
        mid = np.arange(self.horizon) + 0.5
        if self.leak_minutes <= 0:
            return (mid >= self.onset).astype(float)
        return np.clip((mid - self.onset) / self.leak_minutes, 0.0, 1.0)

    def warm_scale(self) -> FloatArray:
        mid = np.arange(self.horizon) + 0.5
        if self.warmup_factor <= 1 or self.warmup_minutes <= 0:
            return np.ones(self.horizon)
        return 1 + (self.warmup_factor - 1) * np.clip(1 - mid / self.warmup_minutes, 0.0, None)


def bin_probs(latency: Latency, scale: float = 1.0, tail_share: float = 0.0, tail_ms: float = 0.0) -> FloatArray:
    """Probabilities of the J+1 buckets (last = above the highest edge)."""
    cdf = latency_cdf(latency, EDGES, scale, tail_share, tail_ms)
    probs = np.clip(np.diff(np.concatenate([[0.0], cdf, [1.0]])), 0.0, None)
    return probs / probs.sum()


def gate_edges(latency: Latency) -> list[float]:
    """Pre-registered latency gate edges from the baseline distribution alone: the Istio edges bracketing the
    baseline [p95, p99] range (the largest edge ≤ p95 and the smallest edge ≥ p99)."""
    from scipy.stats import norm

    p95 = latency.median_ms * math.exp(latency.sigma * norm.ppf(0.95))
    p99 = latency.median_ms * math.exp(latency.sigma * norm.ppf(0.99))
    below = [e for e in EDGES if e <= p95]
    above = [e for e in EDGES if e >= p99]
    return sorted({below[-1] if below else EDGES[0], above[0] if above else EDGES[-1]})


@dataclass
class Batch:
    """R replicates of one cell. Observed arrays are what the methods see; the rest is ground truth."""

    cell: Cell
    n_c: IntArray
    e_c: IntArray
    n_b: IntArray
    e_b: IntArray
    cum_c: IntArray
    cum_b: IntArray
    has_data: NDArray[np.bool_]
    served_c: IntArray  # canary requests actually served (also in gaps)
    harm: FloatArray  # expected excess bad canary requests per minute: errors above p_B, plus slow above the SLO
    pi_b: FloatArray  # true bins at full effect, for the oracle
    pi_c: FloatArray
    edges: FloatArray = field(default_factory=lambda: EDGES)
    ungapped: Batch | None = None  # the same replicates with every minute observed (gap cells only)

    @property
    def replicates(self) -> int:
        return int(self.n_c.shape[0])

    def run(self, i: int) -> RunData:
        return RunData(self.n_c[i], self.e_c[i], self.n_b[i], self.e_b[i], self.cum_c[i], self.cum_b[i], self.edges)


def _lognormal_noise(rng: np.random.Generator, sigma: float, shape: tuple[int, ...]) -> FloatArray:
    if sigma <= 0:
        return np.ones(shape)
    return np.exp(sigma * rng.standard_normal(shape) - sigma**2 / 2)


def generate(cell: Cell, replicates: int | None = None, seed: int | None = None) -> Batch:
    r = cell.replicates if replicates is None else replicates
    t = cell.horizon
    rng = np.random.default_rng([cell.seed if seed is None else seed, 20240611])
    phase = rng.uniform(0, 1440, size=(r, 1))
    rate = 60.0 * cell.rps * (1 + 0.5 * np.sin(2 * np.pi * (phase + np.arange(t)) / 1440))
    total = rng.poisson(rate)
    n_c = rng.binomial(total, cell.weight_schedule())
    n_b = total - n_c

    effect = cell.effect()
    shock = _lognormal_noise(rng, cell.shock_sigma, (r, t))
    noise = _lognormal_noise(rng, cell.overdispersion, (r, t))
    p_b = np.minimum(1.0, cell.p_b * shock)
    p_c = np.minimum(1.0, p_b * (1 + (cell.theta - 1) * effect) * noise)
    if cell.per_pod:
        return _generate_pods(cell, rng, n_c, n_b, p_c, p_b)
    e_b = rng.binomial(n_b, p_b)
    e_c = rng.binomial(n_c, p_c)

    lat = cell.latency
    pi_b = bin_probs(lat)
    scale = cell.warm_scale() * (1 + (cell.lat_scale - 1) * effect)
    tail = cell.tail_share * effect
    probs_c = np.stack([bin_probs(lat, s, a, cell.tail_ms) for s, a in zip(scale, tail, strict=True)])
    if cell.within_bucket:
        probs_c = np.tile(pi_b, (t, 1))
    bins_c = rng.multinomial(n_c, probs_c)
    bins_b = rng.multinomial(n_b, pi_b)
    cum_c, cum_b = np.cumsum(bins_c, axis=-1), np.cumsum(bins_b, axis=-1)

    slo = int(np.searchsorted(EDGES, SLO_MS))
    slow_c = 1 - np.cumsum(probs_c, axis=-1)[:, slo]
    slow_b = 1 - np.cumsum(pi_b)[slo]
    harm = n_c * (np.maximum(0.0, p_c - p_b) + np.maximum(0.0, slow_c - slow_b))

    served_c = n_c.copy()
    if cell.counter_reset:
        e_c, cum_c = _through_counters(rng, e_c, bins_c, restart_at=rng.integers(10, t - 10, size=r))
        n_c = cum_c[..., -1].copy()

    pi_c = bin_probs(lat, cell.lat_scale, cell.tail_share, cell.tail_ms) if not cell.within_bucket else pi_b
    has_data = np.ones((r, t), dtype=bool)
    full = Batch(cell, n_c, e_c, n_b, e_b, cum_c, cum_b, has_data, served_c, harm, pi_b, pi_c)
    if cell.gap_share <= 0 and cell.gap_block is None:
        return full
    if cell.gap_share > 0:
        has_data &= rng.random((r, t)) >= cell.gap_share
    if cell.gap_block is not None:
        has_data[:, cell.gap_block[0]:cell.gap_block[1]] = False
    n_c, e_c, n_b, e_b = (np.where(has_data, a, 0) for a in (n_c, e_c, n_b, e_b))
    cum_c, cum_b = (np.where(has_data[..., None], a, 0) for a in (cum_c, cum_b))
    return Batch(cell, n_c, e_c, n_b, e_b, cum_c, cum_b, has_data, served_c, harm, pi_b, pi_c, ungapped=full)


def _lognormal_bins(median: float, sigma: float, scale: FloatArray) -> FloatArray:
    """Bucket probabilities [..., J+1] of a lognormal latency with its median scaled by `scale` [...]."""
    from scipy.stats import norm

    z = (np.log(EDGES) - np.log(median * scale)[..., None]) / sigma
    cdf = norm.cdf(z)
    probs = np.diff(np.concatenate([np.zeros((*cdf.shape[:-1], 1)), cdf, np.ones((*cdf.shape[:-1], 1))], axis=-1),
                    axis=-1)
    probs = np.clip(probs, 0.0, None)
    return probs / probs.sum(axis=-1, keepdims=True)


def _pod_counts(rng: np.random.Generator, cell: Cell, n: IntArray, p_err: FloatArray, pods: int,
                scale: FloatArray) -> tuple[IntArray, IntArray]:
    """Errors [R, T] and bucket counts [R, T, J+1] of one subset served by `pods` pods with per-minute effects."""
    r, t = n.shape
    split = rng.multinomial(n, np.full(pods, 1.0 / pods))  # [R, T, P]
    err = _lognormal_noise(rng, cell.pod_error_sigma, (r, t, pods))
    errors = rng.binomial(split, np.minimum(1.0, p_err[..., None] * err)).sum(axis=-1)
    lat = _lognormal_noise(rng, cell.pod_latency_sigma, (r, t, pods))
    bins = np.zeros((r, t, EDGES.size + 1), dtype=np.int64)
    for k in range(t):  # one minute at a time keeps the [R, P, J+1] probabilities small
        probs = _lognormal_bins(cell.median_ms, cell.sigma, scale[k] * lat[:, k])
        bins[:, k] = rng.multinomial(split[:, k], probs).sum(axis=1)
    return errors, bins


def _generate_pods(cell: Cell, rng: np.random.Generator, n_c: IntArray, n_b: IntArray, p_c: FloatArray,
                   p_b: FloatArray) -> Batch:
    """The per-pod model (issue 9): no gaps, resets, tails or warm-up in these cells."""
    if cell.gap_share or cell.gap_block or cell.counter_reset or cell.tail_share or cell.within_bucket:
        raise ValueError(f"{cell.name}: per-pod cells do not combine with gaps, resets, tails or within-bucket")
    effect = cell.effect()
    scale_c = cell.warm_scale() * (1 + (cell.lat_scale - 1) * effect)
    e_b, bins_b = _pod_counts(rng, cell, n_b, np.broadcast_to(p_b, n_b.shape), cell.pods_b, np.ones(cell.horizon))
    e_c, bins_c = _pod_counts(rng, cell, n_c, np.broadcast_to(p_c, n_c.shape), cell.pods_c, scale_c)
    lat = cell.latency
    pi_b = bin_probs(lat)
    pi_c = bin_probs(lat, cell.lat_scale)
    slo = int(np.searchsorted(EDGES, SLO_MS))
    slow_c = np.stack([1 - np.cumsum(bin_probs(lat, s))[slo] for s in scale_c])
    harm = n_c * (np.maximum(0.0, p_c - p_b) + np.maximum(0.0, slow_c - (1 - np.cumsum(pi_b)[slo])))
    cum_c, cum_b = np.cumsum(bins_c, axis=-1), np.cumsum(bins_b, axis=-1)
    has_data = np.ones(n_c.shape, dtype=bool)
    return Batch(cell, n_c, e_c, n_b, e_b, cum_c, cum_b, has_data, n_c.copy(), harm, pi_b, pi_c)


def _through_counters(
    rng: np.random.Generator, errors: IntArray, bins: IntArray, restart_at: IntArray
) -> tuple[IntArray, IntArray]:
    """Split the canary over two pods, restart pod 0 once, and ingest the cumulative counters like Prometheus.

    Returns the ingested per-minute errors [R, T] and cumulative `le` counts [R, T, J+1].
    """
    r, t = errors.shape
    pod0_err = rng.binomial(errors, 0.5)
    pod0_bins = rng.binomial(bins, 0.5)
    series = np.concatenate([errors[..., None], bins], axis=-1)  # [R, T, 1 + J+1] per-minute increments
    pod0 = np.concatenate([pod0_err[..., None], pod0_bins], axis=-1)
    pod1 = series - pod0
    # In the restart minute, a random share of pod 0's increments happened before the restart and is lost.
    rows = np.arange(r)
    kept = rng.binomial(pod0[rows, restart_at], rng.uniform(0, 1, size=(r, 1)))
    counter0 = np.cumsum(pod0, axis=1)
    after = np.cumsum(pod0, axis=1) - counter0[rows, restart_at][:, None, :] + kept[:, None, :]
    mask = (np.arange(t)[None, :] >= restart_at[:, None])[..., None]
    counter0 = np.where(mask, after, counter0)
    counter1 = np.cumsum(pod1, axis=1)
    out = np.zeros_like(series)
    for i in range(r):
        for counter in (counter0[i], counter1[i]):
            for s in range(series.shape[-1]):
                out[i, :, s] += np.asarray(series_deltas(counter[:, s].tolist(), from_zero=True), dtype=np.int64)
    err = out[..., 0]
    cum = np.cumsum(out[..., 1:], axis=-1)
    return err, cum
