"""The simulated mesh in real time: traffic routed by the router's current weights, served as Istio /metrics.

`LiveMesh` draws each scrape's traffic since the previous scrape from `SimulatedMesh.simulate`
(which reads the router's weights at that moment), spreads it over the subset's pods and serves
the pods' cumulative counters in Istio's exposition format (`analyzer.sim.exposition`). Envoy's
routing therefore follows the engine's decisions at scrape granularity. (A real mesh switches at
once, so its first scrape after a weight change mixes old and new weights; this mesh does not.)
Every scrape is recorded with the cumulative ground truth at that instant, so a test knows what
any window must contain.

`run_in_real_time` ticks real engines on the wall clock, halfway between two scrapes: a window's
edges then never race a scrape, and routes set on a tick apply from the next scrape on.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import structlog

from analyzer.config import RolloutSpec
from analyzer.engine import Engine, TickOutcome
from analyzer.model import SubsetCounts
from analyzer.sim.exposition import Layout, Plan, Pod, State, exposition
from analyzer.sim.mesh import SimulatedMesh
from analyzer.sim.scenario import Scenario
from analyzer.traffic.memory import MemoryRouter

_LAYOUT = Layout(start=0.0)  # only its response codes are used: 200 ok, 500 and 503 errors
_HISTORY_REQUESTS = (1000, 5000)  # baseline pods were serving before the run


@dataclass(frozen=True)
class Scrape:
    """One render of /metrics: when, and the ground truth served so far per subset."""

    t: float
    baseline: SubsetCounts
    canary: SubsetCounts


class _PodCounters:
    """One pod's cumulative values: requests per Layout code, then histogram bins (+Inf last)."""

    def __init__(self, n_codes: int, n_bins: int, start: Sequence[int] | None = None) -> None:
        self.n_codes = n_codes
        self.values = list(start) if start is not None else [0] * (n_codes + n_bins)

    def state(self, t: float, edges: Sequence[float]) -> State:
        codes, bins = self.values[: self.n_codes], self.values[self.n_codes:]
        mids = [(lo + hi) / 2 for lo, hi in zip((0.0, *edges), edges, strict=False)] + [2 * edges[-1]]
        return State(t=t, requests=tuple(codes), buckets=tuple(int(x) for x in np.cumsum(bins)),
                     sum_ms=float(np.dot(bins, mids)), requests_seen=tuple(v > 0 for v in codes),
                     histogram_seen=sum(bins) > 0)


class LiveMesh:
    """One service's baseline and canary pods. `render()` is the /metrics body; it advances the traffic."""

    def __init__(self, spec: RolloutSpec, scenario: Scenario, router: MemoryRouter, *, seed: int = 0,
                 pods_per_subset: int = 2, clock: Callable[[], float] = time.time) -> None:
        self.spec = spec
        self.edges = spec.analysis.bucket_edges
        self._clock = clock
        self._rng = np.random.default_rng(seed + 1)
        self._lock = threading.Lock()
        self._last = clock()
        self._mesh = SimulatedMesh(scenario, router, seed=seed, start=self._at(self._last), edges=self.edges)
        t = spec.target
        service = spec.target.host.split(".", 1)[0]
        self._subsets = {
            version: [Pod(f"{service}-{version}-{i}", version, service=service, namespace=t.namespace,
                          born=-1 if version == t.baseline.label_value else 0) for i in range(pods_per_subset)]
            for version in (t.baseline.label_value, t.canary.label_value)
        }
        n_codes, n_bins = len(_LAYOUT.codes), len(self.edges) + 1
        self._pods = {pod: _PodCounters(n_codes, n_bins, self._history(pod, n_codes, n_bins))
                      for pods in self._subsets.values() for pod in pods}
        self._served = {version: SubsetCounts(0, 0, (0,) * n_bins) for version in self._subsets}
        self.scrapes: list[Scrape] = []
        self._log = structlog.get_logger(__name__).bind(service=service)

    @staticmethod
    def _at(t: float) -> datetime:
        return datetime.fromtimestamp(t, UTC)

    def _history(self, pod: Pod, n_codes: int, n_bins: int) -> list[int] | None:
        if pod.born >= 0:
            return None
        ok = int(self._rng.integers(*_HISTORY_REQUESTS))
        errors = [int(x) for x in self._rng.integers(0, 5, n_codes - 1)]
        bins = self._rng.multinomial(ok + sum(errors), np.full(n_bins, 1.0 / n_bins))
        return [ok, *errors, *(int(b) for b in bins)]

    def _spread(self, version: str, counts: SubsetCounts) -> None:
        """Add one slice's counts to the subset's pods: every code and bin split at random over the pods."""
        n_err = len(_LAYOUT.error_codes)
        per_error = self._rng.multinomial(counts.errors, np.full(n_err, 1.0 / n_err))
        bins = np.diff(np.concatenate([[0], counts.latency_le]))
        vector = [counts.requests - counts.errors, *per_error, *bins]
        pods = self._subsets[version]
        shares = [self._rng.multinomial(int(x), np.full(len(pods), 1.0 / len(pods))) for x in vector]
        for i, pod in enumerate(pods):
            counter = self._pods[pod]
            counter.values = [v + int(s[i]) for v, s in zip(counter.values, shares, strict=True)]
        self._served[version] = self._served[version] + counts

    def advance(self, now: float) -> None:
        """Serve the traffic of [last, now), routed by the router's weights at this moment."""
        if now <= self._last:
            return
        interval = self._mesh.simulate(self.spec, self._at(self._last), self._at(now))
        t = self.spec.target
        self._spread(t.baseline.label_value, interval.baseline)
        self._spread(t.canary.label_value, interval.canary)
        self._last = now

    def states(self) -> dict[Pod, State]:
        """Advance to now, record the scrape, and return what every pod exports."""
        with self._lock:
            now = self._clock()
            self.advance(now)
            t = self.spec.target
            self.scrapes.append(Scrape(now, self._served[t.baseline.label_value], self._served[t.canary.label_value]))
            return {pod: c.state(now, self.edges) for pod, c in self._pods.items()}

    def served_between(self, start: float, end: float) -> tuple[SubsetCounts, SubsetCounts]:
        """Ground truth of what Prometheus holds for [start, end): the scrapes in it, minus the one before."""
        with self._lock:
            before = [s for s in self.scrapes if s.t < start]
            inside = [s for s in self.scrapes if start <= s.t < end]
        if not before or not inside:
            raise ValueError(f"no scrape before {start} or inside [{start}, {end})")
        a, b = before[-1], inside[-1]
        return _minus(b.baseline, a.baseline), _minus(b.canary, a.canary)


def _minus(a: SubsetCounts, b: SubsetCounts) -> SubsetCounts:
    return SubsetCounts(a.requests - b.requests, a.errors - b.errors,
                        tuple(x - y for x, y in zip(a.latency_le, b.latency_le, strict=True)))


def render(meshes: Sequence[LiveMesh]) -> str:
    """One /metrics body for several services (a MetricsServer's render callable)."""
    states: dict[Pod, State] = {}
    for mesh in meshes:
        states.update(mesh.states())
    if not states:
        return ""
    edges = meshes[0].edges
    if any(m.edges != edges for m in meshes):
        raise ValueError("meshes served together must share bucket edges")
    plan = Plan(_LAYOUT, edges, tuple(states), {pod: (s,) for pod, s in states.items()})
    return exposition(plan, max(s.t for s in states.values()))


def mid_scrape(scrapes: Sequence[float], scrape_interval: float, after: float) -> float:
    """The first instant after `after` halfway between two scrapes (Prometheus keeps a fixed phase)."""
    if not scrapes:
        raise ValueError("no scrape seen yet")
    t = scrapes[-1] + scrape_interval / 2
    while t <= after:
        t += scrape_interval
    return t


def run_in_real_time(
    engines: Sequence[Engine],
    *,
    start_at: float,
    deadline: float,
    on_tick: Callable[[Engine, TickOutcome], None] | None = None,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Start every engine at wall time `start_at`, then tick each every spec.timing.interval until done or deadline.

    The engines share one interval, so they tick together; each must run on a wall clock.
    """
    intervals = {e.spec.timing.interval for e in engines}
    if len(intervals) != 1:
        raise ValueError(f"engines tick at different intervals {sorted(intervals)}")
    interval = intervals.pop()
    log = structlog.get_logger(__name__)
    sleep(max(0.0, start_at - clock()))
    for engine in engines:
        engine.start()
    k = 1
    while not all(e.done for e in engines):
        at = start_at + k * interval
        if at > deadline:
            log.warning("real_time_deadline", pending=[e.rollout_id for e in engines if not e.done])
            return
        sleep(max(0.0, at - clock()))
        late = clock() - at
        if late > interval / 4:
            log.warning("tick_late", seconds=round(late, 3))
        for engine in engines:
            if not engine.done:
                outcome = engine.tick()
                if on_tick:
                    on_tick(engine, outcome)
        k += 1
