"""Peer decision rules for the benchmark (statistics.md §10.2), as pure per-run functions.

Time convention: window t (0-based) covers minute [t, t+1) and its data is judged at the end of it, so a decision
taken on window t is reported at minute t + 1. A run that never rolls back decides at minute T.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from scipy import stats

from analyzer.stats.fixed import conditional_binomial_p, fisher_greater_p, mann_whitney_z
from analyzer.stats.histogram import bin_counts, binned_mean, histogram_mean, histogram_quantile
from analyzer.stats.kayenta import KayentaConfig, MetricConfig, judge

Decision = Literal["rollback", "promote", "inconclusive"]
ErrorsTest = Literal["binomial", "fisher"]
FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class RunData:
    """One simulated run: per-interval increments for canary (c) and baseline (b).

    n_*, e_*: [T] requests and errors; cum_*: [T, J+1] cumulative `le` counts (last = +Inf); edges: [J] in ms;
    sum_*: optional [T] latency sums (ms) from `_sum`; without them the mean comes from bucket midpoints.
    """

    n_c: NDArray[np.int64]
    e_c: NDArray[np.int64]
    n_b: NDArray[np.int64]
    e_b: NDArray[np.int64]
    cum_c: NDArray[np.int64]
    cum_b: NDArray[np.int64]
    edges: FloatArray
    sum_c: FloatArray | None = None
    sum_b: FloatArray | None = None

    def __post_init__(self) -> None:
        t = np.shape(self.n_c)[0]
        j = np.shape(self.edges)[0]
        for name in ("e_c", "n_b", "e_b"):
            if np.shape(getattr(self, name)) != (t,):
                raise ValueError(f"{name} must have shape ({t},)")
        for name in ("cum_c", "cum_b"):
            if np.shape(getattr(self, name)) != (t, j + 1):
                raise ValueError(f"{name} must have shape ({t}, {j + 1})")

    @property
    def horizon(self) -> int:
        return int(np.shape(self.n_c)[0])


@dataclass(frozen=True)
class MethodResult:
    decision: Decision
    minute: int | None
    reason: str = ""


def _first(mask: NDArray[np.bool_]) -> int | None:
    idx = np.flatnonzero(mask)
    return int(idx[0]) if idx.size else None


# ---- (a) Flagger ----


def _flagger_decision(failed: NDArray[np.bool_], threshold: int, rollback_lag: int, what: str) -> MethodResult:
    t = failed.size
    hit = _first(np.cumsum(failed) >= threshold)
    if hit is not None:
        # The counter is checked at the start of the next tick (peers.md F.2 step 8).
        return MethodResult("rollback", hit + 1 + rollback_lag, f"{threshold} failed checks ({what})")
    if t and failed[-1]:
        # A failed check at max weight halts promotion for that tick; the ramp ended without a verdict.
        return MethodResult("inconclusive", t, "last check failed below the threshold")
    return MethodResult("promote", t, "end of ramp")


def flagger(
    run: RunData, sr_min: float = 99.0, p99_max_ms: float = 500.0, threshold: int = 5, rollback_lag: int = 1
) -> MethodResult:
    """Flagger builtin checks on the canary alone, per 1-minute window; no data counts as a failed check."""
    n, e = run.n_c.astype(float), run.e_c.astype(float)
    has = n > 0
    sr = np.where(has, (n - e) / np.where(has, n, 1.0) * 100.0, np.nan)
    p99 = np.trunc(np.asarray(histogram_quantile(0.99, run.edges, run.cum_c)))  # Flagger cuts to whole ms
    with np.errstate(invalid="ignore"):
        failed = ~has | np.isnan(sr) | np.isnan(p99) | (sr < sr_min) | (p99 > p99_max_ms)
    return _flagger_decision(failed, threshold, rollback_lag, f"SR ≥ {sr_min}%, p99 ≤ {p99_max_ms} ms")


def flagger_relative(
    run: RunData, sr_margin_pp: float = 0.5, p99_factor: float = 1.2, threshold: int = 5, rollback_lag: int = 1
) -> MethodResult:
    """Tuned Flagger with baseline-relative bars: SR_C ≥ SR_B − margin and p99_C ≤ factor·p99_B."""
    def sr(n: NDArray[np.int64], e: NDArray[np.int64]) -> FloatArray:
        nf = n.astype(float)
        return np.where(nf > 0, (nf - e) / np.where(nf > 0, nf, 1.0) * 100.0, np.nan)

    sr_c, sr_b = sr(run.n_c, run.e_c), sr(run.n_b, run.e_b)
    q_c = np.asarray(histogram_quantile(0.99, run.edges, run.cum_c))
    q_b = np.asarray(histogram_quantile(0.99, run.edges, run.cum_b))
    with np.errstate(invalid="ignore"):
        # Any NaN (no traffic on either side) makes the PromQL empty/NaN: a failed check.
        failed = (np.isnan(sr_c) | np.isnan(sr_b) | np.isnan(q_c) | np.isnan(q_b)
                  | (sr_c < sr_b - sr_margin_pp) | (q_c > p99_factor * q_b))
    return _flagger_decision(failed, threshold, rollback_lag, "baseline-relative bars")


# ---- (b) Kayenta ----


def kayenta_series(run: RunData) -> dict[str, tuple[FloatArray, FloatArray]]:
    """Per-minute (control, experiment) series Kayenta would query: error ratio, p99 and mean latency; NaN = no data."""
    def ratio(e: NDArray[np.int64], n: NDArray[np.int64]) -> FloatArray:
        return np.asarray(histogram_mean(e, n), dtype=float)

    def mean(cum: NDArray[np.int64], s: FloatArray | None) -> FloatArray:
        if s is None:
            return np.asarray(binned_mean(run.edges, cum), dtype=float)
        return np.asarray(histogram_mean(s, cum[:, -1]), dtype=float)

    return {
        "error_ratio": (ratio(run.e_b, run.n_b), ratio(run.e_c, run.n_c)),
        "p99": (np.asarray(histogram_quantile(0.99, run.edges, run.cum_b)),
                np.asarray(histogram_quantile(0.99, run.edges, run.cum_c))),
        "mean_latency": (mean(run.cum_b, run.sum_b), mean(run.cum_c, run.sum_c)),
    }


def kayenta_config(
    allowed_increase: float = 1.0,
    nan_strategy: Literal["remove", "replace"] = "remove",
    pass_threshold: float = 75.0,
    marginal_threshold: float = 50.0,
) -> KayentaConfig:
    """Three increase-only metrics in one group, so the score is the percentage of metrics passing."""
    metrics = tuple(
        MetricConfig(name, groups=("canary",), direction="increase", nan_strategy=nan_strategy,
                     allowed_increase=allowed_increase)
        for name in ("error_ratio", "p99", "mean_latency")
    )
    return KayentaConfig(metrics, pass_threshold=pass_threshold, marginal_threshold=marginal_threshold)


def kayenta(
    run: RunData,
    warmup: int = 5,
    allowed_increase: float = 1.0,
    nan_strategy: Literal["remove", "replace"] = "remove",
    pass_threshold: float = 75.0,
    marginal_threshold: float = 50.0,
    interval: int = 1,
    seed: int = 0,
) -> MethodResult:
    """Kayenta stage: judge the growing window [warmup, k) at k = warmup + interval, warmup + 2·interval, … ≤ T
    (peers.md §b.7; `interval` is canaryAnalysisIntervalMins).

    Any score ≤ marginal stops the stage (rollback). The stage ends at the last judgement, whose score must be
    ≥ pass, else rollback.
    """
    if interval < 1:
        raise ValueError("interval must be at least 1 minute")
    cfg = kayenta_config(allowed_increase, nan_strategy, pass_threshold, marginal_threshold)
    series = kayenta_series(run)
    last, end = None, warmup
    for k in range(warmup + interval, run.horizon + 1, interval):
        window = {name: (c[warmup:k], e[warmup:k]) for name, (c, e) in series.items()}
        j = judge(window, cfg, seed=seed + k)
        last, end = j.score, k
        if j.score <= marginal_threshold:
            return MethodResult("rollback", k, f"score {j.score} ≤ marginal: {j.reason}")
    if last is None:
        return MethodResult("inconclusive", run.horizon, "no judgement after warm-up")
    if last >= pass_threshold:
        return MethodResult("promote", end, f"last score {last}")
    return MethodResult("rollback", end, f"last score {last} < pass {pass_threshold}")


# ---- (c) naive peeking and (d) fixed horizon ----


def _error_p(ec: FloatArray, nc: FloatArray, eb: FloatArray, nb: FloatArray, test: ErrorsTest) -> FloatArray:
    return fisher_greater_p(ec, nc, eb, nb) if test == "fisher" else conditional_binomial_p(ec, nc, eb, nb)


def _latency_p(cum_c: FloatArray, cum_b: FloatArray) -> FloatArray:
    _, z = mann_whitney_z(bin_counts(cum_c), bin_counts(cum_b))
    return np.where(np.isnan(z), 1.0, stats.norm.sf(z))


def peeking(
    run: RunData, alpha: float = 0.05, errors_test: ErrorsTest = "binomial", errors: bool = True,
    latency: bool = True,
) -> MethodResult:
    """One-sided fixed-n tests re-run on cumulative data every minute; rollback at the first p ≤ alpha (per test)."""
    t = run.horizon
    reject = np.zeros(t, dtype=bool)
    if errors:
        cs = [np.cumsum(a) for a in (run.e_c, run.n_c, run.e_b, run.n_b)]
        reject |= _error_p(*cs, errors_test) <= alpha
    if latency:
        reject |= _latency_p(np.cumsum(run.cum_c, axis=0), np.cumsum(run.cum_b, axis=0)) <= alpha
    hit = _first(reject)
    if hit is not None:
        return MethodResult("rollback", hit + 1, f"p ≤ {alpha} at look {hit + 1}")
    return MethodResult("promote", t, "no rejection")


def fixed_horizon(
    run: RunData, alpha: float = 0.05, errors_test: ErrorsTest = "binomial", errors: bool = True,
    latency: bool = True,
) -> MethodResult:
    """The same tests, one look at T on all the data."""
    t = run.horizon
    tot = [np.asarray([a.sum()]) for a in (run.e_c, run.n_c, run.e_b, run.n_b)]
    p_err = float(_error_p(*tot, errors_test)[0]) if errors else 1.0
    p_lat = float(_latency_p(run.cum_c.sum(axis=0), run.cum_b.sum(axis=0))) if latency else 1.0
    if min(p_err, p_lat) <= alpha:
        return MethodResult("rollback", t, f"p_errors={p_err:.3g}, p_latency={p_lat:.3g}")
    return MethodResult("promote", t, f"p_errors={p_err:.3g}, p_latency={p_lat:.3g}")


# ---- (e) oracle SPRT ----


def oracle_llr_errors(run: RunData, p_b: float, theta: float) -> FloatArray:
    """Per-minute log-likelihood ratio of canary errors, Bernoulli(θ·p_B) against Bernoulli(p_B), p_B known."""
    p_c = theta * p_b
    if p_b <= 0 or theta <= 1 or p_c >= 1:
        return np.zeros(run.horizon)
    e = run.e_c.astype(float)
    return e * np.log(theta) + (run.n_c - e) * np.log((1 - p_c) / (1 - p_b))


def oracle_llr_latency(run: RunData, pi_b: FloatArray, pi_c: FloatArray) -> FloatArray:
    """Per-minute LLR of canary bucket counts under the true canary bins π_C against the baseline bins π_B."""
    pb = np.asarray(pi_b, dtype=float)
    pc = np.asarray(pi_c, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        coef = np.log(pc / pb)
    coef = np.nan_to_num(coef, nan=0.0, posinf=np.inf, neginf=-np.inf)
    bins = bin_counts(run.cum_c)
    # Bins that are empty contribute nothing, even where the coefficient is infinite.
    with np.errstate(invalid="ignore"):
        return np.where(bins > 0, bins * coef, 0.0).sum(axis=1)


def oracle_sprt(
    run: RunData,
    alpha: float = 0.05,
    p_b: float | None = None,
    theta: float | None = None,
    pi_b: FloatArray | None = None,
    pi_c: FloatArray | None = None,
) -> MethodResult:
    """Wald SPRT knowing the truth, as a power-one test: rollback when a cumulative LR reaches 1/alpha.

    Errors use (p_b, theta); latency uses the true bin probabilities (pi_b, pi_c, length J+1). Each is tested at
    `alpha`. Without rejection the run promotes at T.
    """
    t = run.horizon
    llr = np.full(t, -np.inf)
    if p_b is not None and theta is not None:
        llr = np.maximum(llr, np.cumsum(oracle_llr_errors(run, p_b, theta)))
    if pi_b is not None and pi_c is not None:
        llr = np.maximum(llr, np.cumsum(oracle_llr_latency(run, pi_b, pi_c)))
    hit = _first(llr >= np.log(1 / alpha))
    if hit is not None:
        return MethodResult("rollback", hit + 1, f"LR ≥ 1/{alpha}")
    return MethodResult("promote", t, "LR below 1/alpha")
