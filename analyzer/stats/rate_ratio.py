"""Stratified conditional-binomial mixture e-process for a rate ratio (statistics.md §5.1).

Per interval k, given the interval's total events E_k, canary events follow Bin(E_k, q_k(θ)) with
q_k(θ) = ρ_k θ / (ρ_k θ + 1 − ρ_k) and ρ_k the observed canary share of requests. The likelihood
ratio against θ0 is (θ/θ0)^x · ((1 + ρ(θ0−1)) / (1 + ρ(θ−1)))^E, so one integer (cumulative canary
events X) and one cumulative penalty P(θ) = Σ E_k log1p(ρ_k(θ−1)) per grid point are enough for:

* the rollback e-process (mixture over θ > 1),
* the promotion (non-inferiority) e-process for H0': θ ≥ θ_tol (mixture over θ < θ_tol),
* the two-sided confidence sequence for θ (mixture over a wide grid, inverted).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

ROLLBACK_GRID = (1.25, 10.0, 32)


def logsumexp(a: np.ndarray) -> float:
    """log Σ exp(a), stable; a lean version of scipy's for the per-tick hot path."""
    top = a.max()
    return float(top + np.log(np.exp(a - top).sum()))

CS_GRID = (0.02, 50.0, 161)


@dataclass(frozen=True)
class RatioGrid:
    """The fixed θ grid for one tolerance: slices into one concatenated array."""

    thetas: np.ndarray
    log_thetas: np.ndarray
    rollback: slice
    promote: slice
    tol_index: int
    cs: slice


@lru_cache(maxsize=64)
def ratio_grid(tolerance: float) -> RatioGrid:
    rollback = np.geomspace(*ROLLBACK_GRID[:2], ROLLBACK_GRID[2])
    # Non-inferiority alternatives: a canary as good as or better than the baseline, up to near θ_tol.
    promote = np.geomspace(0.25, tolerance / 1.1, 24)
    cs = np.geomspace(*CS_GRID[:2], CS_GRID[2])
    thetas = np.concatenate([rollback, promote, [tolerance], cs])
    a, b = rollback.size, rollback.size + promote.size
    return RatioGrid(
        thetas=thetas,
        log_thetas=np.log(thetas),
        rollback=slice(0, a),
        promote=slice(a, b),
        tol_index=b,
        cs=slice(b + 1, thetas.size),
    )


@dataclass(frozen=True)
class RatioSummary:
    """The evidence about θ = p_canary / p_baseline after t intervals (scipy-style named result)."""

    log_e: float  # rollback e-process, log
    log_promotion_e: float  # non-inferiority e-process against θ_tol, log
    estimate: float | None  # maximum-likelihood θ on the grid; None without events
    ci: tuple[float, float] | None  # anytime-valid confidence sequence at the level asked
    canary_events: int
    baseline_events: int
    canary_requests: int
    baseline_requests: int


@dataclass(frozen=True)
class RatioEvidence:
    """Sufficient statistics of the e-processes for one event type (errors, or slow requests at one edge)."""

    tolerance: float
    x: int = 0
    pen: tuple[float, ...] = ()
    n_c: int = 0
    n_b: int = 0
    e_c: int = 0
    e_b: int = 0
    # Per interval with data: (canary requests, baseline requests); the exposure for power checks.
    exposure: tuple[tuple[int, int], ...] = field(default=())

    def update(self, n_c: int, e_c: int, n_b: int, e_b: int) -> RatioEvidence:
        if min(n_c, e_c, n_b, e_b) < 0 or e_c > n_c or e_b > n_b:
            raise ValueError(f"invalid counts: canary {e_c}/{n_c}, baseline {e_b}/{n_b}")
        if n_c + n_b == 0:
            return self
        grid = ratio_grid(self.tolerance)
        pen = np.asarray(self.pen) if self.pen else np.zeros(grid.thetas.size)
        total = e_c + e_b
        if total:  # an interval without events carries no information (L_k = 1)
            rho = n_c / (n_c + n_b)
            pen = pen + total * np.log1p(rho * (grid.thetas - 1.0))
        return RatioEvidence(
            tolerance=self.tolerance,
            x=self.x + e_c,
            pen=tuple(pen.tolist()),
            n_c=self.n_c + n_c,
            n_b=self.n_b + n_b,
            e_c=self.e_c + e_c,
            e_b=self.e_b + e_b,
            exposure=(*self.exposure, (n_c, n_b)),
        )

    def _log_lik(self) -> np.ndarray:
        grid = ratio_grid(self.tolerance)
        if not self.pen:
            return np.zeros(grid.thetas.size)
        return self.x * grid.log_thetas - np.asarray(self.pen)

    def summary(self, alpha: float = 0.05) -> RatioSummary:
        grid = ratio_grid(self.tolerance)
        ll = self._log_lik()
        rb, pr, cs = ll[grid.rollback], ll[grid.promote], ll[grid.cs]
        log_e = float(logsumexp(rb) - np.log(rb.size))
        log_prom = float(logsumexp(pr) - np.log(pr.size) - ll[grid.tol_index])
        estimate = ci = None
        if self.e_c + self.e_b > 0:
            thetas = grid.thetas[grid.cs]
            estimate = float(thetas[int(np.argmax(cs))])
            log_mix = logsumexp(cs) - np.log(cs.size)
            inside = thetas[cs > log_mix - np.log(1.0 / alpha)]
            if inside.size:
                ci = (float(inside.min()), float(inside.max()))
        return RatioSummary(
            log_e=log_e,
            log_promotion_e=log_prom,
            estimate=estimate,
            ci=ci,
            canary_events=self.e_c,
            baseline_events=self.e_b,
            canary_requests=self.n_c,
            baseline_requests=self.n_b,
        )

    def to_json(self) -> dict:
        return {
            "tolerance": self.tolerance, "x": self.x, "pen": list(self.pen), "n_c": self.n_c, "n_b": self.n_b,
            "e_c": self.e_c, "e_b": self.e_b, "exposure": [list(r) for r in self.exposure],
        }

    @classmethod
    def from_json(cls, data: dict) -> RatioEvidence:
        return cls(
            tolerance=float(data["tolerance"]), x=int(data["x"]), pen=tuple(data["pen"]), n_c=int(data["n_c"]),
            n_b=int(data["n_b"]), e_c=int(data["e_c"]), e_b=int(data["e_b"]),
            exposure=tuple((int(a), int(b)) for a, b in data["exposure"]),
        )


_LOG_ROLLBACK = np.log(np.geomspace(*ROLLBACK_GRID[:2], ROLLBACK_GRID[2]))


def rollback_log_e(x: np.ndarray, pen: np.ndarray) -> np.ndarray:
    """Vectorised rollback log e-value for many replicates: x [...], pen [..., G_rollback]."""
    terms = x[..., None] * _LOG_ROLLBACK - pen
    top = terms.max(axis=-1)
    return top + np.log(np.exp(terms - top[..., None]).sum(axis=-1)) - np.log(_LOG_ROLLBACK.size)


def negligible_log_e(events: int, requests: int, level: float) -> float:
    """log e-value against H0: the canary's own rate is at least `level` (one-sided, anytime-valid).

    A mixture of Bernoulli likelihood ratios with alternatives below `level`; each is a supermartingale
    under every p >= level (monotone likelihood ratio), and so is their average.
    """
    if requests == 0:
        return 0.0
    alts = level * np.array([0.1, 0.25, 0.5])
    terms = events * np.log(alts / level) + (requests - events) * (np.log1p(-alts) - np.log1p(-level))
    return float(logsumexp(terms) - np.log(alts.size))


def detection_power(
    exposure: tuple[tuple[int, int], ...] | np.ndarray,
    rate: float,
    ratio: float,
    alpha: float,
    *,
    replicates: int = 400,
    seed: int = 0,
) -> float:
    """P(the rollback e-process would have reached 1/alpha) had the canary been `ratio` times worse.

    Monte Carlo over the observed per-interval exposure (statistics.md §5.6): canary events
    ~ Poisson(n_c·rate·ratio), baseline events ~ Poisson(n_b·rate). Only the evidence at the end is
    checked, not every interval on the way: that under-states the power a little (the safe side for
    promotion). Intervals with nearly the same canary share (to 0.01) are pooled, since sums of
    Poisson counts are Poisson; a rollout has a handful of such groups, one per weight step.
    """
    exp = np.asarray(exposure, dtype=float).reshape(-1, 2)
    if exp.size == 0 or rate <= 0:
        return 0.0
    rng = np.random.default_rng(seed)
    share = np.round(exp[:, 0] / np.maximum(exp.sum(axis=1), 1.0), 2)
    _, group = np.unique(share, return_inverse=True)
    n_c = np.bincount(group, weights=exp[:, 0])
    n_b = np.bincount(group, weights=exp[:, 1])
    e_c = rng.poisson(n_c * rate * ratio, size=(replicates, n_c.size))
    e_b = rng.poisson(n_b * rate, size=(replicates, n_b.size))
    total = n_c + n_b
    rho = np.divide(n_c, total, out=np.zeros_like(n_c), where=total > 0)
    step_pen = np.log1p(rho[:, None] * (np.exp(_LOG_ROLLBACK) - 1.0))  # [K, G]
    pen = (e_c + e_b).astype(float) @ step_pen  # [R, G]
    log_e = rollback_log_e(e_c.sum(axis=1).astype(float), pen)
    return float((log_e >= np.log(1.0 / alpha)).mean())
