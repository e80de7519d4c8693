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

from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np
from numpy.typing import NDArray

from analyzer.stats import dispersion
from analyzer.stats.dispersion import NoiseBound
from analyzer.stats.packed import Floats, IntPairs

FloatArray = NDArray[np.float64]

ROLLBACK_GRID = (1.25, 10.0, 32)


def logsumexp(a: np.ndarray) -> float:
    """log Σ exp(a), stable; a lean version of scipy's for the per-tick hot path."""
    top = a.max()
    return float(top + np.log(np.exp(a - top).sum()))

CS_GRID = (0.02, 50.0, 161)


@dataclass(frozen=True)
class RatioGrid:
    """The fixed θ grid for one tolerance (and MDE): slices into one concatenated array."""

    thetas: np.ndarray
    log_thetas: np.ndarray
    rollback: slice
    promote: slice
    tol_index: int
    mde_index: int
    cs: slice


@lru_cache(maxsize=64)
def ratio_grid(tolerance: float, mde: float = 2.0) -> RatioGrid:
    rollback = np.geomspace(*ROLLBACK_GRID[:2], ROLLBACK_GRID[2])
    # Non-inferiority alternatives: a canary as good as or better than the baseline, up to near θ_tol.
    promote = np.geomspace(0.25, tolerance / 1.1, 24)
    cs = np.geomspace(*CS_GRID[:2], CS_GRID[2])
    thetas = np.concatenate([rollback, promote, [tolerance, mde], cs])
    a, b = rollback.size, rollback.size + promote.size
    return RatioGrid(
        thetas=thetas,
        log_thetas=np.log(thetas),
        rollback=slice(0, a),
        promote=slice(a, b),
        tol_index=b,
        mde_index=b + 1,
        cs=slice(b + 2, thetas.size),
    )


@dataclass(frozen=True)
class RatioSummary:
    """The evidence about θ = p_canary / p_baseline after t intervals (scipy-style named result)."""

    log_e: float  # rollback e-process, log (tempered by the between-interval noise bound)
    log_promotion_e: float  # non-inferiority e-process against θ_tol, log (tempered the same way)
    log_promotion_e_mde: float  # the same against θ_mde (the opt-in rule after the budget)
    estimate: float | None  # maximum-likelihood θ on the grid; None without events
    ci: tuple[float, float] | None  # anytime-valid confidence sequence at the level asked
    canary_events: int
    baseline_events: int
    canary_requests: int
    baseline_requests: int
    noise: NoiseBound | None = None  # the tempering behind the e-values; None before any interval with events


@dataclass(frozen=True)
class RatioState:
    """Sufficient statistics of the tempered e-processes, with leading batch dimensions (the benchmark's [R])."""

    x: FloatArray  # canary events
    pen: FloatArray  # [..., G] Σ E_k log1p(ρ_k(θ−1)), untempered: the constant-ratio fit behind the residuals
    tx: FloatArray  # Σ x_k / φ_k
    tpen: FloatArray  # [..., G] Σ E_k log1p(ρ_k(θ−1)) / φ_k
    tau_ll: FloatArray  # [..., G_tau] log-likelihood of τ² from past residuals
    info: FloatArray  # Σ E_k q̂_k(1 − q̂_k): the information behind the fit (for leverages)
    residuals: FloatArray  # residuals used
    phi: FloatArray  # the last interval's divisor
    tau2: FloatArray  # the last interval's bound on τ²

    @classmethod
    def zeros(cls, shape: tuple[int, ...], grid_size: int) -> RatioState:
        z = np.zeros(shape)
        return cls(z, np.zeros((*shape, grid_size)), z, np.zeros((*shape, grid_size)),
                   np.zeros((*shape, dispersion.TAU.size)), z, z, np.ones(shape), z)


def advance(grid: RatioGrid, tolerance: float, prior_tau: float | FloatArray, s: RatioState,
            n_c: FloatArray, e_c: FloatArray, n_b: FloatArray, e_b: FloatArray) -> RatioState:
    """One interval for every batch member (docs/statistics-validity.md §2).

    φ̂_k comes from the past only (the τ² bound before this interval), and from this interval's E_k and ρ_k, which
    the conditional test conditions on. Intervals without events leave everything unchanged.
    """
    n_c, e_c, n_b, e_b = (np.asarray(a, dtype=float) for a in (n_c, e_c, n_b, e_b))
    n = n_c + n_b
    rho = np.divide(n_c, n, out=np.zeros(np.shape(n)), where=n > 0)
    events = e_c + e_b
    has = events > 0
    tau2 = dispersion.tau2_upper(s.tau_ll, prior_tau)
    # The variance factor at the decisions' nulls: θ = 1 (rollback) and θ = θ_tol (promotion).
    q_tol = dispersion.share(rho, tolerance)
    v = np.maximum(rho * (1 - rho), q_tol * (1 - q_tol))
    phi = np.where(has, dispersion.phi(events, v, tau2), 1.0)
    step = events[..., None] * np.log1p(rho[..., None] * (grid.thetas - 1.0))
    pen = s.pen + step
    x = s.x + e_c
    # The constant-ratio fit including this interval, and this interval's residual around it.
    ll_cs = x[..., None] * grid.log_thetas[grid.cs] - pen[..., grid.cs]
    q_hat = dispersion.share(rho, np.exp(dispersion.refine_log_theta(ll_cs, grid.log_thetas[grid.cs])))
    info_k = np.where(has, events * q_hat * (1 - q_hat), 0.0)
    info = s.info + info_k
    leverage = np.divide(info_k, info, out=np.ones(np.shape(info)), where=info > 0)
    res = dispersion.residual_loglik(e_c, events, q_hat, leverage)
    used = (res != 0).any(axis=-1)
    return RatioState(
        x=x, pen=pen, tx=s.tx + e_c / phi, tpen=s.tpen + step / phi[..., None],
        tau_ll=s.tau_ll + np.where(has[..., None], res, 0.0), info=info, residuals=s.residuals + used,
        phi=np.where(has, phi, s.phi), tau2=np.where(has, tau2, s.tau2),
    )


def _vec(values: Sequence[float], size: int) -> FloatArray:
    return np.array(values, dtype=float) if len(values) else np.zeros(size)


@dataclass(frozen=True)
class RatioEvidence:
    """Sufficient statistics of the e-processes for one event type (errors, or slow requests at one edge).

    `noise` is the prior bound on the between-interval noise τ (0: trust the binomial model, today's test).
    The per-grid-point vectors (pen, tpen, tau_ll) are held as `Floats` and the exposure as `IntPairs`, 8 bytes a
    value (`analyzer.stats.packed`); tuples given are converted.
    """

    tolerance: float
    x: int = 0
    pen: Sequence[float] = Floats()
    mde: float = 2.0
    n_c: int = 0
    n_b: int = 0
    e_c: int = 0
    e_b: int = 0
    # Per interval with data: (canary requests, baseline requests); the exposure for power checks.
    exposure: Sequence[tuple[int, int]] = IntPairs()
    noise: float = dispersion.DEFAULT_PRIOR_TAU
    tx: float = 0.0
    tpen: Sequence[float] = Floats()
    tau_ll: Sequence[float] = Floats()
    info: float = 0.0
    residuals: int = 0
    phi: float = 1.0
    tau2: float = 0.0

    def __post_init__(self) -> None:
        for name in ("pen", "tpen", "tau_ll"):
            if not isinstance(getattr(self, name), Floats):
                object.__setattr__(self, name, Floats(getattr(self, name)))
        if not isinstance(self.exposure, IntPairs):
            object.__setattr__(self, "exposure", IntPairs(self.exposure))

    def _state(self, size: int) -> RatioState:
        return RatioState(
            x=np.asarray(float(self.x)), pen=_vec(self.pen, size), tx=np.asarray(self.tx),
            tpen=_vec(self.tpen, size), tau_ll=_vec(self.tau_ll, dispersion.TAU.size), info=np.asarray(self.info),
            residuals=np.asarray(float(self.residuals)), phi=np.asarray(self.phi), tau2=np.asarray(self.tau2),
        )

    def update(self, n_c: int, e_c: int, n_b: int, e_b: int, prior: float | None = None) -> RatioEvidence:
        """One interval; `prior` replaces `noise` as this interval's prior bound (a latency edge's, `edge_prior`)."""
        if min(n_c, e_c, n_b, e_b) < 0 or e_c > n_c or e_b > n_b:
            raise ValueError(f"invalid counts: canary {e_c}/{n_c}, baseline {e_b}/{n_b}")
        if n_c + n_b == 0:
            return self
        grid = ratio_grid(self.tolerance, self.mde)
        bound = self.noise if prior is None else prior
        s = advance(grid, self.tolerance, bound, self._state(grid.thetas.size), n_c, e_c, n_b, e_b)
        return replace(
            self,
            x=self.x + e_c,
            pen=Floats(s.pen),
            n_c=self.n_c + n_c,
            n_b=self.n_b + n_b,
            e_c=self.e_c + e_c,
            e_b=self.e_b + e_b,
            exposure=IntPairs(self.exposure).appended(n_c, n_b),
            tx=float(s.tx),
            tpen=Floats(s.tpen),
            tau_ll=Floats(s.tau_ll),
            info=float(s.info),
            residuals=int(s.residuals),
            phi=float(s.phi),
            tau2=float(s.tau2),
        )

    def _log_lik(self, tempered: bool = True) -> np.ndarray:
        grid = ratio_grid(self.tolerance, self.mde)
        if not self.pen:
            return np.zeros(grid.thetas.size)
        if tempered:
            return self.tx * grid.log_thetas - np.asarray(self.tpen)
        return self.x * grid.log_thetas - np.asarray(self.pen)

    def summary(self, alpha: float = 0.05) -> RatioSummary:
        grid = ratio_grid(self.tolerance, self.mde)
        ll = self._log_lik()
        rb, pr, cs = ll[grid.rollback], ll[grid.promote], ll[grid.cs]
        log_e = float(logsumexp(rb) - np.log(rb.size))
        log_prom = float(logsumexp(pr) - np.log(pr.size) - ll[grid.tol_index])
        below = pr[grid.thetas[grid.promote] < self.mde]  # alternatives must lie below the null θ ≥ θ_mde
        log_prom_mde = float(logsumexp(below) - np.log(below.size) - ll[grid.mde_index]) if below.size else 0.0
        estimate = ci = None
        noise = None
        if self.e_c + self.e_b > 0:
            thetas = grid.thetas[grid.cs]
            estimate = float(thetas[int(np.argmax(self._log_lik(tempered=False)[grid.cs]))])
            log_mix = logsumexp(cs) - np.log(cs.size)
            inside = thetas[cs > log_mix - np.log(1.0 / alpha)]
            if inside.size:
                ci = (float(inside.min()), float(inside.max()))
            noise = NoiseBound(tau_upper=float(np.sqrt(self.tau2)), phi=self.phi, intervals=self.residuals)
        return RatioSummary(
            log_e=log_e,
            log_promotion_e=log_prom,
            log_promotion_e_mde=log_prom_mde,
            estimate=estimate,
            ci=ci,
            canary_events=self.e_c,
            baseline_events=self.e_b,
            canary_requests=self.n_c,
            baseline_requests=self.n_b,
            noise=noise,
        )

    def to_json(self) -> dict:
        return {
            "tolerance": self.tolerance, "mde": self.mde, "x": self.x, "pen": list(self.pen), "n_c": self.n_c,
            "n_b": self.n_b,
            "e_c": self.e_c, "e_b": self.e_b, "exposure": [list(r) for r in self.exposure], "noise": self.noise,
            "tx": self.tx, "tpen": list(self.tpen), "tau_ll": list(self.tau_ll), "info": self.info,
            "residuals": self.residuals, "phi": self.phi, "tau2": self.tau2,
        }

    @classmethod
    def from_json(cls, data: dict) -> RatioEvidence:
        pen = Floats(data["pen"])
        # States written before the tempering are untempered: carry them on as they were.
        return cls(
            tolerance=float(data["tolerance"]), mde=float(data.get("mde", 2.0)), x=int(data["x"]), pen=pen,
            n_c=int(data["n_c"]), n_b=int(data["n_b"]), e_c=int(data["e_c"]), e_b=int(data["e_b"]),
            exposure=IntPairs([(int(a), int(b)) for a, b in data["exposure"]]),
            noise=float(data.get("noise", 0.0)), tx=float(data.get("tx", data["x"])),
            tpen=Floats(data.get("tpen", pen)), tau_ll=Floats(data.get("tau_ll", ())),
            info=float(data.get("info", 0.0)), residuals=int(data.get("residuals", 0)), phi=float(data.get("phi", 1.0)),
            tau2=float(data.get("tau2", 0.0)),
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


@dataclass(frozen=True)
class FirstPassage:
    """Simulated first interval (1-based; 0 = never) at which the gate's e-processes crossed, per replicate."""

    rollback: np.ndarray  # [R] rollback e-process ≥ 1/alpha
    promotion: np.ndarray  # [R] non-inferiority e-process ≥ rules/alpha_prom


def first_passage(
    exposure: np.ndarray,
    rate: float,
    ratio: float,
    *,
    alpha: float,
    promotion_alpha: float,
    tolerance: float = 1.5,
    mde: float = 2.0,
    noise: float = dispersion.DEFAULT_PRIOR_TAU,
    replicates: int = 200,
    seed: int = 0,
) -> FirstPassage:
    """The tempered gate along an expected exposure [K, 2] with binomial (Poisson) events: when would it decide?

    Planning (statistics.md §7): canary events ~ Poisson(n_c·rate·ratio), baseline ~ Poisson(n_b·rate), interval by
    interval, through the same update as the judge, so the figures include the cost of the noise bound.
    """
    exp = np.asarray(exposure, dtype=float).reshape(-1, 2)
    rng = np.random.default_rng(seed)
    grid = ratio_grid(tolerance, mde)
    state = RatioState.zeros((replicates,), grid.thetas.size)
    rb = np.zeros(replicates, dtype=int)
    pr = np.zeros(replicates, dtype=int)
    for k, (n_c, n_b) in enumerate(exp, start=1):
        e_c = rng.poisson(n_c * rate * ratio, replicates).astype(float)
        e_b = rng.poisson(n_b * rate, replicates).astype(float)
        e_c, e_b = np.minimum(e_c, n_c), np.minimum(e_b, n_b)
        state = advance(grid, tolerance, noise, state, np.full(replicates, n_c), e_c, np.full(replicates, n_b), e_b)
        ll = state.tx[:, None] * grid.log_thetas - state.tpen
        log_rb = _mean_exp(ll[:, grid.rollback])
        log_pr = _mean_exp(ll[:, grid.promote]) - ll[:, grid.tol_index]
        rb = np.where((rb == 0) & (log_rb >= np.log(1 / alpha)), k, rb)
        pr = np.where((pr == 0) & (log_pr >= np.log(1 / promotion_alpha)), k, pr)
    return FirstPassage(rb, pr)


def _mean_exp(a: np.ndarray) -> np.ndarray:
    top = a.max(axis=-1)
    return top + np.log(np.exp(a - top[..., None]).mean(axis=-1))
