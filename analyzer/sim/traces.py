"""Simulated Istio traces for Bookinfo-like call graphs, and a `TraceSource` the engine can read them from.

How the simulated mesh uses it (one call per interval, with the requests it routed to each subset):

    source = SimulatedTraceSource(trace_scenario("trace-slow-operation"), seed=7,
                                  canary_subset="v2", t0=rollout_start)
    mesh.trace_sink = source
    ...
    source.record(start, end, {"v1": 950, "v2": 50})      # the mesh, after routing an interval
    spans = source.spans(spec, start, end)               # the engine, through the TraceSource port
    report = analyze_traces(all_spans, "v1", "v2")       # analyzer.traces, for the summary

`generate_spans` is the pure generator behind `record`: it samples `sampling_rate` of the requests as
whole traces productpage -> {details, reviews -> ratings}, with the tags Envoy and Istio put on spans
(formats.md §3.5). Regressions apply to canary traces only, from `onset_minute` after `t0`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from threading import Lock
from typing import Any, Literal

import numpy as np
import structlog
from pydantic import Field, model_validator

from analyzer.config import Model, RolloutSpec
from analyzer.model import Span

log = structlog.get_logger(__name__)

US_PER_MINUTE = 60_000_000
MAX_SPANS_PER_TRACE = 10_000  # a call graph that fans out further would stall the simulation


class TraceRegression(Model):
    """A canary-only change seen in traces."""

    kind: Literal["slow", "errors", "new-call", "n-plus-one"]
    service: str = "ratings"  # slow: the app whose server spans get slower; n-plus-one: the app called again
    factor: float = Field(default=1.5, gt=0)  # slow: multiplies that app's own time
    rate: float = Field(default=1.0, ge=0, le=1)  # errors: share of target spans failing; new-call: share of traces
    callee: str = "mysql"  # new-call: the new downstream app
    calls: int = Field(default=4, ge=1, le=1000)  # n-plus-one: calls per request instead of one
    onset_minute: float = Field(default=0.0, ge=0)


class TraceScenario(Model):
    name: str = "trace-healthy"
    description: str = ""
    sampling_rate: float = Field(default=0.01, gt=0, le=1)  # Istio's default PILOT_TRACE_SAMPLING is 1%
    namespace: str = "bookinfo"
    root: str = "productpage"
    target: str = "reviews"  # the app under the canary rollout
    graph: dict[str, list[str]] = Field(
        default_factory=lambda: {"productpage": ["details", "reviews"], "reviews": ["ratings"]})
    self_ms: dict[str, float] = Field(  # median own time per app (lognormal)
        default_factory=lambda: {"productpage": 6.0, "details": 1.5, "reviews": 4.0, "ratings": 2.0, "mysql": 3.0})
    sigma: float = Field(default=0.35, gt=0, le=5)
    error_rate: float = Field(default=0.002, ge=0, le=1)  # per server span, every subset
    regressions: list[TraceRegression] = Field(default_factory=list)

    @model_validator(mode="after")
    def _graph(self) -> TraceScenario:
        for app, ms in self.self_ms.items():
            if not 0 < ms <= 1e6:
                raise ValueError(f"self_ms.{app}: {ms:g} is not a time in (0, 1e6] ms")
        # The calls a request can make: the graph, plus the target's new calls under a regression.
        calls = {app: list(callees) for app, callees in self.graph.items()}
        calls.setdefault(self.target, [])
        calls[self.target] += [r.callee for r in self.regressions if r.kind == "new-call"]
        cycle, order = _walk(calls, self.root)
        if cycle:
            raise ValueError(f"graph: the calls form a cycle {' -> '.join(cycle)}; a request would never end")
        fan_out = max((r.calls for r in self.regressions if r.kind == "n-plus-one"), default=1)
        spans: dict[str, int] = {}
        for app in order:  # callees before callers; each call is a client and a server span
            spans[app] = min(1 + sum(1 + spans[c] for c in calls.get(app, ())) * fan_out, MAX_SPANS_PER_TRACE + 1)
        if spans[self.root] > MAX_SPANS_PER_TRACE:
            raise ValueError(f"graph: one request would make more than {MAX_SPANS_PER_TRACE} spans")
        return self


def _walk(graph: Mapping[str, Sequence[str]], root: str) -> tuple[list[str] | None, list[str]]:
    """(the first call cycle reachable from `root`, e.g. [a, b, a], or None; the apps in post-order).

    Iterative, so a long chain of calls cannot exhaust the stack.
    """
    path = [root]
    order: list[str] = []
    done: set[str] = set()
    stack = [iter(graph.get(root, ()))]
    while stack:
        callee = next(stack[-1], None)
        if callee is None:
            stack.pop()
            order.append(path.pop())
            done.add(order[-1])
        elif callee in path:
            return [*path[path.index(callee):], callee], order
        elif callee not in done:
            stack.append(iter(graph.get(callee, ())))
            path.append(callee)
    return None, order


TRACE_SCENARIOS: dict[str, dict[str, Any]] = {
    "trace-healthy": {"description": "Canary traces look like baseline traces."},
    "trace-slow-operation": {
        "description": "The canary's calls to ratings take 1.6x as long (e.g. a heavier query).",
        "regressions": [{"kind": "slow", "service": "ratings", "factor": 1.6}],
    },
    "trace-error-spans": {
        "description": "5% of canary reviews requests fail with 503.",
        "regressions": [{"kind": "errors", "service": "reviews", "rate": 0.05}],
    },
    "trace-new-call": {
        "description": "The canary calls mysql on 30% of requests; the baseline never does.",
        "regressions": [{"kind": "new-call", "callee": "mysql", "rate": 0.3}],
    },
    "trace-n-plus-one": {
        "description": "The canary calls ratings once per review (4x) instead of once per request.",
        "regressions": [{"kind": "n-plus-one", "service": "ratings", "calls": 4}],
    },
}


def trace_scenario(name_or_data: str | Mapping[str, Any]) -> TraceScenario:
    """A built-in by name, or a mapping (e.g. the `traces:` block of a simulation scenario).

    A mapping may name a built-in under `preset` and override its fields.
    """
    if isinstance(name_or_data, str):
        if name_or_data not in TRACE_SCENARIOS:
            raise KeyError(f"unknown trace scenario {name_or_data!r}; known: {', '.join(sorted(TRACE_SCENARIOS))}")
        return TraceScenario.model_validate({"name": name_or_data, **TRACE_SCENARIOS[name_or_data]})
    data = dict(name_or_data)
    preset = data.pop("preset", None)
    if preset is not None and (not isinstance(preset, str) or preset not in TRACE_SCENARIOS):
        raise ValueError(f"preset: {preset!r} is not a trace scenario (known: {', '.join(sorted(TRACE_SCENARIOS))})")
    base = {"name": preset, **TRACE_SCENARIOS[preset]} if preset else {}
    return TraceScenario.model_validate({**base, **data})


@dataclass
class _Trace:
    """Builds the spans of one sampled request."""

    rng: np.random.Generator
    scenario: TraceScenario
    trace_id: str
    revisions: Mapping[str, str]  # app -> istio.canonical_revision
    subset: str  # the target's subset serving this request
    active: list[TraceRegression]
    spans: list[Span] = field(default_factory=list)
    scale: float = 1.0  # the serving pods' latency effect on the target's own time (per-pod scenarios)

    def _id(self) -> str:
        return self.rng.bytes(8).hex()

    def _ms(self, app: str) -> float:
        factor = 1.0
        for r in self.active:
            if r.kind == "slow" and r.service == app:
                factor *= r.factor
        if app == self.scenario.target:
            factor *= self.scale
        median = self.scenario.self_ms.get(app, 2.0) * factor
        return float(median * np.exp(self.scenario.sigma * self.rng.standard_normal()))

    def _tags(self, app: str, kind: str) -> dict[str, Any]:
        ns, rev = self.scenario.namespace, self.revisions.get(app, "v1")
        digest = hashlib.sha1(f"{app}-{rev}".encode()).hexdigest()
        pod = f"{app}-{rev}-{digest[:10]}-{digest[10:15]}"
        ip = f"10.244.0.{int(digest[:2], 16) % 250 + 2}"
        return {
            "component": "proxy", "span.kind": kind, "istio.canonical_service": app,
            "istio.canonical_revision": rev, "istio.namespace": ns, "istio.mesh_id": "cluster.local",
            "node_id": f"sidecar~{ip}~{pod}.{ns}~{ns}.svc.cluster.local", "net.host.ip": ip,
            "response_flags": "-", "http.method": "GET", "http.protocol": "HTTP/1.1",
        }

    def _span(self, span_id: str, app: str, operation: str, kind: str, parent: str | None, start: int, end: int,
              status: int, tags: dict[str, Any]) -> None:
        error = status >= 500
        if error:
            tags["error"] = True
        tags["http.status_code"] = str(status)
        # Subset as a real source tells it: the target's own spans by revision, callers' by upstream_cluster.
        calls_target = kind == "client" and f"|{self.scenario.target}." in str(tags.get("upstream_cluster"))
        subset = self.subset if app == self.scenario.target or calls_target else None
        self.spans.append(Span(self.trace_id, span_id, parent, f"{app}.{self.scenario.namespace}", operation, kind,
                               start, end - start, error, status, subset, tags))

    def _callees(self, app: str) -> list[str]:
        callees = list(self.scenario.graph.get(app, []))
        if app != self.scenario.target:
            return callees
        for r in self.active:
            if r.kind == "n-plus-one" and r.service in callees:
                i = callees.index(r.service)
                callees[i:i + 1] = [r.service] * r.calls
            elif r.kind == "new-call" and self.rng.random() < r.rate:
                callees.append(r.callee)
        return callees

    def _failed(self, app: str) -> bool:
        rate = self.scenario.error_rate
        for r in self.active:
            if r.kind == "errors" and r.service == app:
                rate = 1 - (1 - rate) * (1 - r.rate)
        return bool(self.rng.random() < rate)

    def serve(self, app: str, start: int, parent: str | None, operation: str, path: str) -> tuple[int, int]:
        """Emit the server span of `app` and everything below it; returns (end_us, status)."""
        ns = self.scenario.namespace
        span_id = self._id()
        own = self._ms(app) * 1000
        cursor = start + int(own / 2)  # half the own time before the calls, half after
        for callee in self._callees(app):
            hop = int(self.rng.uniform(150, 400))  # proxy + network per direction
            client_id, sub_start = self._id(), cursor + hop
            sub_end, sub_status = self._call(callee, sub_start, client_id)
            client_end = sub_end + hop
            # The DestinationRule subset name of the callee, as Envoy writes it into the cluster name.
            dr_subset = self.subset if callee == self.scenario.target else "v1"
            client_tags = {**self._tags(app, "client"), "http.url": f"http://{callee}:9080/{callee}/0",
                           "upstream_cluster": f"outbound|9080|{dr_subset}|{callee}.{ns}.svc.cluster.local"}
            self._span(client_id, app, f"{callee}.{ns}.svc.cluster.local:9080/*", "client", span_id, cursor,
                       client_end, sub_status, client_tags)
            cursor = client_end
        end = cursor + int(own / 2) + 1
        status = 503 if self._failed(app) else 200
        tags = {**self._tags(app, "server"), "http.url": f"http://{app}:9080{path}",
                "upstream_cluster": "inbound|9080||"}
        self._span(span_id, app, operation, "server", parent, start, end, status, tags)
        return end, status

    def _call(self, callee: str, start: int, client_id: str) -> tuple[int, int]:
        ns = self.scenario.namespace
        return self.serve(callee, start, client_id, f"{callee}.{ns}.svc.cluster.local:9080/*", f"/{callee}/0")


def _active(scenario: TraceScenario, subset: str, canary_subset: str | None, minute: float) -> list[TraceRegression]:
    if subset != canary_subset:
        return []
    return [r for r in scenario.regressions if minute >= r.onset_minute]


def generate_spans(
    rng: np.random.Generator,
    scenario: TraceScenario,
    start: datetime,
    end: datetime,
    requests_by_subset: Mapping[str, int],
    *,
    canary_subset: str | None,
    t0: datetime | None = None,
    revisions: Mapping[str, str] | None = None,
    latency_scale: Mapping[str, float] | None = None,
) -> list[Span]:
    """Sampled spans for the requests routed to each subset of `scenario.target` during [start, end).

    `requests_by_subset` counts requests per subset name; `revisions` maps a subset name to its
    `istio.canonical_revision` (default: the subset name itself, as with Bookinfo's `version` labels).
    Regressions hit `canary_subset` only, from `onset_minute` after `t0` (default: `start`).
    """
    t0 = t0 or start
    lo, hi = int(start.timestamp() * 1e6), int(end.timestamp() * 1e6)
    ns, root = scenario.namespace, scenario.root
    spans: list[Span] = []
    for subset, requests in requests_by_subset.items():
        sampled = int(rng.binomial(max(int(requests), 0), scenario.sampling_rate))
        for begin in np.sort(rng.integers(lo, max(hi, lo + 1), sampled)):
            minute = (int(begin) - t0.timestamp() * 1e6) / US_PER_MINUTE
            revision = (revisions or {}).get(subset, subset)
            trace = _Trace(rng, scenario, rng.bytes(16).hex(), {scenario.target: revision}, subset,
                           _active(scenario, subset, canary_subset, minute),
                           scale=(latency_scale or {}).get(subset, 1.0))
            trace.serve(root, int(begin), None, f"{root}.{ns}.svc.cluster.local:9080/{root}", f"/{root}")
            spans.extend(trace.spans)
    return spans


class SimulatedTraceSource:
    """`TraceSource` over simulated spans: filled by `record` (or `push`), or asked through `generate`.

    With a `generate` callback, `spans` returns whatever it gives for the interval; otherwise it returns the
    buffered spans of traces whose root started in [start, end) and drops them from the buffer.
    """

    in_process = True  # no I/O: the daemon need not give up its compute lock around calls

    def __init__(
        self,
        scenario: TraceScenario | None = None,
        *,
        seed: int = 0,
        canary_subset: str | None = None,
        t0: datetime | None = None,
        revisions: Mapping[str, str] | None = None,
        generate: Callable[[RolloutSpec, datetime, datetime], Sequence[Span]] | None = None,
    ) -> None:
        self.scenario = scenario or trace_scenario("trace-healthy")
        self.rng = np.random.default_rng(seed)
        self.canary_subset, self.t0, self.revisions = canary_subset, t0, revisions
        self.generate = generate
        self._buffer: list[Span] = []
        self._lock = Lock()  # the mesh and a daemon tick may run on different threads

    def record(self, start: datetime, end: datetime, requests_by_subset: Mapping[str, int],
               latency_scale: Mapping[str, float] | None = None) -> list[Span]:
        """Called by the simulated mesh once per interval with the requests it routed to each subset (and, in
        per-pod scenarios, the pods' mean latency factor per subset)."""
        spans = generate_spans(self.rng, self.scenario, start, end, requests_by_subset,
                               canary_subset=self.canary_subset, t0=self.t0 or start, revisions=self.revisions,
                               latency_scale=latency_scale)
        self.push(spans)
        return spans

    def push(self, spans: Sequence[Span]) -> None:
        with self._lock:
            self._buffer.extend(spans)

    def spans(self, spec: RolloutSpec, start: datetime, end: datetime) -> Sequence[Span]:
        if self.generate is not None:
            return list(self.generate(spec, start, end))
        lo, hi = int(start.timestamp() * 1e6), int(end.timestamp() * 1e6)
        with self._lock:
            roots = {s.trace_id: s.start_us for s in self._buffer if s.parent_id is None}
            inside = {t for t, begin in roots.items() if lo <= begin < hi}
            taken = [s for s in self._buffer if s.trace_id in inside]
            self._buffer = [s for s in self._buffer if s.trace_id not in inside]
        log.debug("simulated_spans", start=start.isoformat(), spans=len(taken), traces=len(inside))
        return taken
