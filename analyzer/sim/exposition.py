"""Istio metric exposition from ground truth, for backfilling Prometheus and for live /metrics endpoints.

Pure: numbers in, strings out. `build_plan` spreads each interval's true per-subset counts over the
pods reporting that subset and over each pod's sample instants (jittered, never on an interval
boundary), so a sample at time t in interval k only ever carries increments of interval k. The exact
per-interval counts are therefore recoverable from raw samples, which is what the tests check.

Realism covered: several pods per subset, both reporters (destination pods, and client pods with
reporter="source"), series created lazily at their first count (e.g. the first 503), baseline pods
with history before the run, a counter reset (the restarted pod's first sample reads 0, the
detectable case), pods appearing and disappearing mid-run, and another service with the same
version label (which a selector must leave out).
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from analyzer.model import SubsetCounts

Code = tuple[str, str]  # (response_code, grpc_response_status)
REQUESTS = "istio_requests_total"
DURATION = "istio_request_duration_milliseconds"


@dataclass(frozen=True)
class Pod:
    """One exporter of one subset's traffic: a destination pod, or a client pod (reporter=source)."""

    name: str
    version: str  # destination_canonical_revision of the traffic it reports
    service: str = "reviews"
    namespace: str = "bookinfo"
    reporter: str = "destination"
    client: str = "productpage"  # source workload's app
    born: int = 0  # first interval with samples; < 0: running before the run, with history
    removed: int | None = None  # first interval without samples
    restart: int | None = None  # interval whose first sample shows the counters reset to 0

    def active(self, k: int) -> bool:
        return self.born <= k and (self.removed is None or k < self.removed)


@dataclass(frozen=True)
class Layout:
    start: float  # unix seconds of interval 0's start
    interval: float = 60.0
    samples_per_interval: int = 4  # sample instants per pod per interval (the "scrapes")
    jitter: float = 0.3  # in slots: how far a sample may move off its slot centre (< 0.5)
    span: tuple[float, float] = (0.0, 1.0)  # part of each interval that holds the samples
    ok_codes: tuple[Code, ...] = (("200", ""),)
    error_codes: tuple[Code, ...] = (("500", ""), ("503", ""))
    seed: int = 0

    @property
    def codes(self) -> tuple[Code, ...]:
        return self.ok_codes + self.error_codes


@dataclass(frozen=True)
class State:
    """One pod's cumulative values at one instant; *_seen say which series exist yet."""

    t: float
    requests: tuple[int, ...]  # per Layout.codes
    buckets: tuple[int, ...]  # cumulative per le, +Inf last
    sum_ms: float
    requests_seen: tuple[bool, ...]
    histogram_seen: bool


@dataclass(frozen=True)
class Plan:
    layout: Layout
    edges: tuple[float, ...]
    pods: tuple[Pod, ...]
    states: Mapping[Pod, tuple[State, ...]]
    history: Mapping[Pod, State] = field(default_factory=dict)


def _split(n: int, parts: int, rng: random.Random) -> list[int]:
    """A random composition of n into `parts` non-negative integers."""
    if parts <= 0:
        raise ValueError("nothing to split into")
    cuts = sorted(rng.randint(0, n) for _ in range(parts - 1))
    return [b - a for a, b in zip([0, *cuts], [*cuts, n], strict=True)]


def _vector(counts: SubsetCounts, layout: Layout, n_le: int, rng: random.Random) -> list[int]:
    """One interval's truth as [count per code..., count per histogram bin...]."""
    if not 0 <= counts.errors <= counts.requests:
        raise ValueError(f"errors {counts.errors} outside [0, requests {counts.requests}]")
    le = counts.latency_le
    if le and (len(le) != n_le or any(b < a for a, b in itertools.pairwise(le))):
        raise ValueError(f"latency_le {le} is not {n_le} non-decreasing cumulative counts")
    per_code = _split(counts.requests - counts.errors, len(layout.ok_codes), rng) + _split(
        counts.errors, len(layout.error_codes), rng
    )
    bins = [b - a for a, b in zip([0, *le], le, strict=False)] if le else [0] * n_le
    return per_code + bins


def _bin_ms(edges: Sequence[float], j: int) -> float:
    """A latency to stand for bin j in _sum (the bin's midpoint; twice the top edge for +Inf)."""
    lower = edges[j - 1] if j else 0.0
    return (lower + edges[j]) / 2 if j < len(edges) else 2 * edges[-1]


def _sample_times(pod: Pod, k: int, layout: Layout, rng: random.Random) -> list[float]:
    lo, hi = layout.span
    m = layout.samples_per_interval
    phase = rng.uniform(-0.2, 0.2)
    out = []
    for j in range(m):
        offset = min(0.45, max(-0.45, phase + rng.uniform(-layout.jitter, layout.jitter) / 2))
        frac = lo + (hi - lo) * (j + 0.5 + offset) / m
        out.append(round((layout.start + (k + frac) * layout.interval) * 1000) / 1000)
    return out


class _Accumulator:
    def __init__(self, n_codes: int, edges: tuple[float, ...], start: list[int] | None = None) -> None:
        self.edges = edges
        self.n_codes = n_codes
        self.values = list(start) if start else [0] * (n_codes + len(edges) + 1)
        self.seen = [v > 0 for v in self.values[:n_codes]]
        self.hist_seen = sum(self.values[n_codes:]) > 0

    def add(self, delta: Sequence[int]) -> None:
        self.values = [a + b for a, b in zip(self.values, delta, strict=True)]
        self.seen = [s or v > 0 for s, v in zip(self.seen, self.values[: self.n_codes], strict=True)]
        self.hist_seen = self.hist_seen or sum(self.values[self.n_codes:]) > 0

    def reset(self) -> None:
        self.values = [0] * len(self.values)  # series stay: Envoy's first scrape after restart reads 0

    def state(self, t: float) -> State:
        bins = self.values[self.n_codes:]
        cumulative = [sum(bins[: j + 1]) for j in range(len(bins))]
        return State(
            t=t,
            requests=tuple(self.values[: self.n_codes]),
            buckets=tuple(cumulative),
            sum_ms=sum(b * _bin_ms(self.edges, j) for j, b in enumerate(bins)),
            requests_seen=tuple(self.seen),
            histogram_seen=self.hist_seen,
        )


def build_plan(
    truth: Mapping[tuple[str, str], Sequence[SubsetCounts]],
    pods: Sequence[Pod],
    layout: Layout,
    edges: Sequence[float],
) -> Plan:
    """Every pod's samples. `truth[(service, version)][k]` is what each reporter saw in interval k."""
    rng = random.Random(layout.seed)
    edges = tuple(edges)
    n_le = len(edges) + 1
    n_codes = len(layout.codes)
    n_intervals = max(len(v) for v in truth.values())
    if layout.samples_per_interval < 2:
        raise ValueError("need at least 2 samples per interval (a restart shows 0 first)")
    shares: dict[Pod, list[list[int]]] = {p: [[0] * (n_codes + n_le) for _ in range(n_intervals)] for p in pods}
    for (service, version), per_interval in truth.items():
        for k, counts in enumerate(per_interval):
            vec = _vector(counts, layout, n_le, rng)
            for reporter in ("destination", "source"):
                group = [p for p in pods if (p.service, p.version, p.reporter) == (service, version, reporter)]
                active = [p for p in group if p.active(k)]
                if group and not active and any(vec):
                    raise ValueError(f"{service}/{version} has counts in interval {k} but no {reporter} pod")
                parts = [_split(x, len(active), rng) for x in vec] if active else []
                for i, p in enumerate(active):
                    shares[p][k] = [part[i] for part in parts]
    states: dict[Pod, tuple[State, ...]] = {}
    history: dict[Pod, State] = {}
    for p in pods:
        acc = _Accumulator(n_codes, edges)
        out: list[State] = []
        if p.born < 0:
            hist = [rng.randint(1000, 5000) for _ in layout.ok_codes] + [rng.randint(0, 3) for _ in layout.error_codes]
            acc = _Accumulator(n_codes, edges, hist + _split(sum(hist), n_le, rng))
            history[p] = acc.state(layout.start - layout.interval)
            out += [acc.state(t) for t in _sample_times(p, -1, layout, rng)]
        for k in range(max(p.born, 0), n_intervals if p.removed is None else min(p.removed, n_intervals)):
            times = _sample_times(p, k, layout, rng)
            reveal = times
            if p.restart == k:
                acc.reset()
                out.append(acc.state(times[0]))
                reveal = times[1:]
            pieces = [_split(x, len(reveal), rng) for x in shares[p][k]]
            for j, t in enumerate(reveal):
                acc.add([piece[j] for piece in pieces])
                out.append(acc.state(t))
        states[p] = tuple(out)
    return Plan(layout, edges, tuple(pods), states, history)


# ---- rendering ----


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def format_le(edge: float) -> str:
    return "+Inf" if edge == float("inf") else (str(int(edge)) if float(edge).is_integer() else repr(float(edge)))


def istio_labels(pod: Pod, code: Code, *, scrape_labels: bool) -> list[tuple[str, str]]:
    """The 25 istio_stats labels (formats.md §1.2) plus the labels Prometheus' pod scrape adds."""
    ns, svc, ver = pod.namespace, pod.service, pod.version
    dest_ok = pod.reporter == "destination"
    labels = [
        ("reporter", pod.reporter),
        ("source_workload", f"{pod.client}-v1"),
        ("source_workload_namespace", ns),
        ("source_principal", f"spiffe://cluster.local/ns/{ns}/sa/bookinfo-{pod.client}"),
        ("source_app", pod.client),
        ("source_version", "v1"),
        ("source_canonical_service", pod.client),
        ("source_canonical_revision", "v1"),
        ("source_cluster", "Kubernetes"),
        ("destination_workload", f"{svc}-{ver}"),
        ("destination_workload_namespace", ns),
        ("destination_principal", f"spiffe://cluster.local/ns/{ns}/sa/bookinfo-{svc}"),
        ("destination_app", svc),
        ("destination_version", ver),
        ("destination_service", f"{svc}.{ns}.svc.cluster.local"),
        ("destination_service_name", svc),
        ("destination_service_namespace", ns),
        ("destination_canonical_service", svc),
        ("destination_canonical_revision", ver),
        ("destination_cluster", "Kubernetes"),
        ("request_protocol", "grpc" if code[1] else "http"),
        ("response_code", code[0]),
        ("grpc_response_status", code[1]),
        ("response_flags", "-"),
        ("connection_security_policy", "mutual_tls" if dest_ok else "unknown"),
        ("namespace", ns),
        ("pod", pod.name),
    ]
    if scrape_labels:
        labels += [("job", "kubernetes-pods"), ("instance", f"{pod.name}:15020")]
    return labels


def _fmt_labels(labels: Sequence[tuple[str, str]]) -> str:
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels) + "}"


def _fmt_value(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(float(v))


def _lines(plan: Plan, states: Mapping[Pod, Sequence[State]], *, timestamps: bool) -> list[str]:
    codes = plan.layout.codes
    les = [format_le(e) for e in (*plan.edges, float("inf"))]

    def ts(s: State) -> str:
        return f" {s.t:.3f}" if timestamps else ""

    out = [f"# TYPE {REQUESTS.removesuffix('_total') if timestamps else REQUESTS} counter"]
    for pod, seq in states.items():
        for c, code in enumerate(codes):
            labels = _fmt_labels(istio_labels(pod, code, scrape_labels=timestamps))
            out += [f"{REQUESTS}{labels} {s.requests[c]}{ts(s)}" for s in seq if s.requests_seen[c]]
    out.append(f"# TYPE {DURATION} histogram")
    for pod, seq in states.items():
        base = istio_labels(pod, codes[0], scrape_labels=timestamps)
        plain = _fmt_labels(base)
        for s in (s for s in seq if s.histogram_seen):
            out += [
                f"{DURATION}_bucket{_fmt_labels([*base, ('le', le)])} {n}{ts(s)}"
                for le, n in zip(les, s.buckets, strict=True)
            ]
            out.append(f"{DURATION}_count{plain} {s.buckets[-1]}{ts(s)}")
            out.append(f"{DURATION}_sum{plain} {_fmt_value(s.sum_ms)}{ts(s)}")
    return out


def openmetrics(plan: Plan) -> str:
    """Every sample with its timestamp, for `promtool tsdb create-blocks-from openmetrics`.

    Lines are grouped per series and time-ordered within it, as the backfiller requires.
    """
    return "\n".join([*_lines(plan, plan.states, timestamps=True), "# EOF"]) + "\n"


def current_state(plan: Plan, pod: Pod, now: float) -> State | None:
    """What the pod exports at `now`; None when it is not running."""
    if pod.removed is not None and now >= plan.layout.start + pod.removed * plan.layout.interval:
        return None
    past = [s for s in plan.states[pod] if s.t <= now]
    if past:
        return past[-1]
    return plan.history.get(pod)


def exposition(plan: Plan, now: float) -> str:
    """The Prometheus text format a /metrics endpoint would serve at `now` (no timestamps)."""
    current = {p: [s] for p in plan.pods if (s := current_state(plan, p, now)) is not None}
    return "\n".join(_lines(plan, current, timestamps=False)) + "\n"

