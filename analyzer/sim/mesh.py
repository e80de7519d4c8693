"""The simulated mesh: a baseline and a canary behind the router, producing Istio-style telemetry.

It implements the `MetricSource` port, so the engine runs the same code it runs in a cluster. Routing
follows the router's current weights and header route, which closes the loop: the engine's
decisions change what the mesh produces. Latency is recorded into histogram buckets by drawing the
interval's bucket counts from a multinomial over the exact bucket probabilities.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

import numpy as np
from scipy.special import ndtr  # what scipy.stats.norm.cdf computes, bit for bit, without scipy.stats

from analyzer.config import RolloutSpec
from analyzer.model import ISTIO_DEFAULT_EDGES_MS, DataGap, Observation, Resume, SubsetCounts
from analyzer.ports import SourceUnavailable
from analyzer.sim.scenario import Latency, Scenario
from analyzer.traffic.memory import MemoryRouter


class TraceSink(Protocol):
    def record(self, start: datetime, end: datetime, requests_by_subset: Mapping[str, int],
               latency_scale: Mapping[str, float] | None = None) -> object: ...


@dataclass(frozen=True)
class Interval:
    """Ground truth of one simulated interval, for tests and benchmarks."""

    start: datetime
    end: datetime
    baseline: SubsetCounts
    canary: SubsetCounts
    header_requests: int
    canary_error_rate: float
    baseline_error_rate: float


def latency_cdf(latency: Latency, edges: np.ndarray, scale: float = 1.0, tail_share: float = 0.0,
                tail_ms: float = 0.0) -> np.ndarray:
    """P(duration <= edge) for each edge."""

    def lognormal(x: np.ndarray, median: float, sigma: float) -> np.ndarray:
        with np.errstate(divide="ignore"):
            return ndtr((np.log(np.maximum(x, 1e-300)) - math.log(median * scale)) / sigma) * (x > 0)

    def body(x: np.ndarray) -> np.ndarray:
        main = lognormal(x, latency.median_ms, latency.sigma)
        if latency.mixture_share == 0:
            return main
        other = lognormal(x, latency.mixture_median_ms, latency.mixture_sigma)
        return (1 - latency.mixture_share) * main + latency.mixture_share * other

    cdf = body(edges)
    if tail_share > 0:
        cdf = (1 - tail_share) * cdf + tail_share * body(edges - tail_ms)
    return cdf


class SimulatedMesh:
    """A deterministic (per seed) baseline + canary; `observe` simulates the interval it is asked about."""

    in_process = True  # no I/O: the daemon need not give up its compute lock around calls

    def __init__(
        self,
        scenario: Scenario,
        router: MemoryRouter,
        *,
        seed: int = 0,
        start: datetime,
        edges: tuple[float, ...] = ISTIO_DEFAULT_EDGES_MS,
    ) -> None:
        self.scenario = scenario
        self.router = router
        self.rng = np.random.default_rng(seed)
        self.t0 = start
        self.edges = edges
        self._edges = np.asarray(edges, dtype=float)
        self.history: list[Interval] = []
        # How much history to keep (the daemon: as far back as a window may reach); None keeps it all, for the
        # reports that read the ground truth. Unbounded, a day of 1-minute ticks held ~1 MB per rollout.
        self.retain: timedelta | None = None
        # Set by the wiring when traces are simulated: receives the requests routed per subset each interval.
        self.trace_sink: TraceSink | None = None
        # Synthetic load (analyzer.sim.load): added to the scenario's rate while the rollout is analysed.
        self.extra_rps = 0.0
        self.extra_requests = 0
        self.extra_seconds = 0.0

    def query_lag(self, spec: RolloutSpec) -> float:
        return 0.0  # the simulated interval is known the moment it ends

    def observe(self, spec: RolloutSpec, start: datetime, end: datetime) -> Observation:
        """The counts of [start, end) as Prometheus would show them, gaps included.

        Traffic is simulated once, as time passes; a window that reaches back over a gap (the engine
        resumes from the last edge both subsets had) sums the intervals already simulated. A tick's
        gap is decided at the middle of its own interval (the last `spec.timing.interval` of the window).
        """
        sc = self.scenario
        probe = (end - self.t0).total_seconds() - min(spec.timing.interval, (end - start).total_seconds()) / 2
        # Simulate even in a gap: the mesh keeps serving requests while telemetry is missing.
        self._simulate_until(spec, start, end)
        down = next((g for g in sc.gaps if g.kind == "unavailable" and g.covers(probe)), None)
        if down is not None:
            raise SourceUnavailable(f"simulated Prometheus outage at minute {probe / 60:.1f}")
        lacking = self._gap_sides(probe)
        if lacking == {"both"}:
            return Observation(start, end, None, None, self.edges)  # no series at all
        if lacking:
            side = lacking.pop() if len(lacking) == 1 else "both"
            return Observation(start, end, None, None, self.edges, gap=DataGap(
                side, f"{side}: simulated scrape gap at minute {probe / 60:.1f}", Resume.START))
        # A side whose scrapes were missing just before `start` resumed after a gap: its first
        # increments reach back before `start`, so the window is a gap too (resume at its end).
        resumed = self._gap_sides((start - self.t0).total_seconds() - 1e-3)
        if resumed:
            side = resumed.pop() if len(resumed) == 1 else "both"
            return Observation(start, end, None, None, self.edges, gap=DataGap(
                side, f"{side}: resumed after a simulated scrape gap", Resume.END))
        inside = [iv for iv in self.history if start <= iv.start and iv.end <= end]
        if not inside:
            raise ValueError(f"window [{start}, {end}) does not start at an edge of the simulated intervals")
        baseline, canary = inside[0].baseline, inside[0].canary
        for iv in inside[1:]:
            baseline, canary = baseline + iv.baseline, canary + iv.canary
        return Observation(start, end, baseline, canary, self.edges,
                           header_requests=sum(iv.header_requests for iv in inside))

    def _gap_sides(self, t: float) -> set[str]:
        return {g.subset for g in self.scenario.gaps if g.kind == "no-data" and g.covers(t)}

    def _simulate_until(self, spec: RolloutSpec, start: datetime, end: datetime) -> None:
        """Simulate what has not been yet, up to `end`, with an interval edge at `start`."""
        until = self.history[-1].end if self.history else start
        if until < start:
            self.simulate(spec, until, start)
            until = start
        if until < end:
            self.simulate(spec, until, end)

    def simulate(self, spec: RolloutSpec, start: datetime, end: datetime) -> Interval:
        sc, rng = self.scenario, self.rng
        dt = (end - start).total_seconds()
        t = (start - self.t0).total_seconds() + dt / 2
        rate = sc.traffic.rps * (1 + sc.traffic.diurnal * math.sin(2 * math.pi * t / sc.traffic.diurnal_period))
        total = int(rng.poisson(max(rate, 0.0) * dt))
        if self.extra_rps > 0:
            extra = int(rng.poisson(self.extra_rps * dt))
            self.extra_requests += extra
            self.extra_seconds += dt
            total += extra
        weights = self.router.get_weights(spec)
        share = min(1.0, weights.get(spec.target.canary.subset, 0) / 100.0 * sc.traffic.canary_share_factor)
        header = int(rng.binomial(total, sc.traffic.header_share)) if self.router.header_route(spec) else 0
        n_c = header + int(rng.binomial(total - header, share))
        n_b = total - n_c

        effect = self._effect(t)
        outage = next((o for o in sc.outages if o.covers(t)), None)
        shock = math.exp(sc.shock_sigma * rng.standard_normal() - sc.shock_sigma**2 / 2) if sc.shock_sigma else 1.0
        p_b = min(1.0, (outage.error_rate if outage else sc.baseline.error_rate) * shock)
        canary_base = outage.error_rate if outage else sc.canary_subset.error_rate
        noise = (math.exp(sc.overdispersion * rng.standard_normal() - sc.overdispersion**2 / 2)
                 if sc.overdispersion else 1.0)
        ratio = 1 + (sc.regression.error_ratio - 1) * effect
        p_c = min(1.0, canary_base * shock * ratio * noise)

        out_scale = outage.latency_scale if outage else 1.0
        warm = sc.warmup
        warm_scale = 1.0
        if warm.factor > 1 and warm.duration > 0:
            warm_scale = 1 + (warm.factor - 1) * max(0.0, 1 - t / warm.duration)
        reg = sc.regression
        scale_c = out_scale * warm_scale * (1 + (reg.latency_scale - 1) * effect)
        lat_b = lat_c = 1.0
        if sc.per_pod:
            baseline, lat_b = self._pods(n_b, sc.baseline.pods, p_b, sc.baseline.latency, out_scale, 0.0, 0.0)
            canary, lat_c = self._pods(n_c, sc.canary_subset.pods, p_c, sc.canary_subset.latency, scale_c,
                                       reg.tail_share * effect, reg.tail_ms)
        else:  # the pooled path, draw for draw as before pods existed (seeds keep their outcomes)
            baseline = self._counts(n_b, p_b, sc.baseline.latency, out_scale, 0.0, 0.0)
            canary = self._counts(n_c, p_c, sc.canary_subset.latency, scale_c, reg.tail_share * effect, reg.tail_ms)
        interval = Interval(start, end, baseline, canary, header, p_c, p_b)
        self.history.append(interval)
        if self.retain is not None:
            old = 0
            while old < len(self.history) - 1 and self.history[old].end <= end - self.retain:
                old += 1
            del self.history[:old]
        if self.trace_sink is not None:
            routed = {spec.target.baseline.subset: n_b, spec.target.canary.subset: n_c}
            if sc.per_pod:  # traces follow the pods' latency effect (request-weighted, per subset)
                scales = {spec.target.baseline.subset: lat_b, spec.target.canary.subset: lat_c}
                self.trace_sink.record(start, end, routed, scales)
            else:
                self.trace_sink.record(start, end, routed)
        return interval

    def _pods(self, n: int, pods: int, p_err: float, latency: Latency, scale: float, tail_share: float,
              tail_ms: float) -> tuple[SubsetCounts, float]:
        """Requests split across the subset's pods, each with this interval's error and latency effect.

        Returns the summed counts and the request-weighted mean latency factor (for the traces).
        """
        sc, rng = self.scenario, self.rng
        split = rng.multinomial(n, np.full(pods, 1.0 / pods)) if n else np.zeros(pods, dtype=int)
        err = np.exp(sc.pod_error_sigma * rng.standard_normal(pods) - sc.pod_error_sigma**2 / 2)
        lat = np.exp(sc.pod_latency_sigma * rng.standard_normal(pods) - sc.pod_latency_sigma**2 / 2)
        errors, le = 0, np.zeros(len(self.edges) + 1, dtype=np.int64)
        for k in range(pods):
            c = self._counts(int(split[k]), min(1.0, p_err * float(err[k])), latency, scale * float(lat[k]),
                             tail_share, tail_ms)
            errors += c.errors
            le += np.asarray(c.latency_le, dtype=np.int64)
        mean_lat = float((split * lat).sum() / n) if n else 1.0
        return SubsetCounts(n, errors, tuple(int(v) for v in le)), mean_lat

    def _effect(self, t: float) -> float:
        """0 before the onset, ramping linearly to 1 over `ramp`."""
        reg = self.scenario.regression
        if t < reg.onset:
            return 0.0
        if reg.ramp <= 0:
            return 1.0
        return min(1.0, (t - reg.onset) / reg.ramp)

    def _counts(self, n: int, p_err: float, latency: Latency, scale: float, tail_share: float,
                tail_ms: float) -> SubsetCounts:
        errors = int(self.rng.binomial(n, p_err)) if n else 0
        cdf = latency_cdf(latency, self._edges, scale, tail_share, tail_ms)
        probs = np.diff(np.concatenate([[0.0], cdf, [1.0]]))
        probs = np.clip(probs, 0.0, None)
        bins = self.rng.multinomial(n, probs / probs.sum()) if n else np.zeros(probs.size, dtype=int)
        return SubsetCounts(n, errors, tuple(int(v) for v in np.cumsum(bins)))
