"""Trace trees: which arm a trace belongs to, readable labels for spans, downstream calls, critical path."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from analyzer.model import Span

_CLUSTER_SUFFIX = ".svc.cluster.local"


def app_of(service: str) -> str:
    """Jaeger service `<app>.<namespace>` -> app."""
    return service.split(".")[0] if service else "?"


def short_operation(span: Span) -> str:
    """`reviews.bookinfo.svc.cluster.local:9080/*` -> `GET reviews:9080/*` (method when known)."""
    host, sep, rest = span.operation.partition(":")
    name = f"{host.split('.')[0]}:{rest}" if sep and host.endswith(_CLUSTER_SUFFIX) else span.operation
    method = span.attributes.get("http.method")
    return f"{method} {name}" if method else name


def callee_of(span: Span) -> str:
    """The app a client span calls, from `upstream_cluster` (outbound|port|subset|fqdn) or its operation."""
    parts = str(span.attributes.get("upstream_cluster", "")).split("|")
    host = parts[3] if len(parts) == 4 and parts[3] else span.operation.partition(":")[0]
    return host.split(".")[0] or "?"


@dataclass
class TraceView:
    """One trace with its arm and the span that put it there (the target's server span)."""

    trace_id: str
    arm: str  # the subset name of the arm
    anchor: Span  # earliest server span with a subset: the canary or baseline request itself
    spans: list[Span]
    children: dict[str, list[Span]] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)  # span_id -> label of a server span

    def descendants(self, span: Span) -> list[Span]:
        out, stack = [], list(self.children.get(span.span_id, []))
        while stack:
            s = stack.pop()
            out.append(s)
            stack.extend(self.children.get(s.span_id, []))
        return out

    def server_spans(self) -> list[Span]:
        return [s for s in self.spans if s.kind == "server"]


def _nearest_server_ancestor(span: Span, by_id: dict[str, Span]) -> Span | None:
    parent, hops = by_id.get(span.parent_id or ""), 0
    while parent is not None and hops < 64:  # guard against cycles in malformed data
        if parent.kind == "server" and parent.service != span.service:
            return parent
        parent, hops = by_id.get(parent.parent_id or ""), hops + 1
    return None


def build_traces(spans: Iterable[Span], arms: Sequence[str]) -> list[TraceView]:
    """Group spans by trace and keep the traces whose server span (else client span) has a subset in `arms`."""
    by_trace: dict[str, list[Span]] = defaultdict(list)
    for s in spans:
        by_trace[s.trace_id].append(s)
    out = []
    for trace_id, members in by_trace.items():
        tagged = [s for s in members if s.subset in arms]
        if not tagged:
            continue
        # Server spans come from the serving pod's sidecar, so they decide the arm (formats.md §3.6).
        anchor = min(tagged, key=lambda s: (s.kind != "server", s.start_us))
        view = TraceView(trace_id, str(anchor.subset), anchor, members)
        by_id = {s.span_id: s for s in members}
        for s in members:
            if s.parent_id in by_id:
                view.children.setdefault(s.parent_id, []).append(s)
        for s in members:
            if s.kind == "server":
                caller = _nearest_server_ancestor(s, by_id)
                own = short_operation(s)
                view.labels[s.span_id] = f"{short_operation(caller)} -> {app_of(s.service)}" if caller else own
        out.append(view)
    return out


def downstream_calls(view: TraceView) -> dict[str, int]:
    """Calls below the anchor per callee label: server spans by label, un-traced callees by client span."""
    counts: dict[str, int] = defaultdict(int)
    for s in view.descendants(view.anchor):
        if s.kind == "server":
            counts[view.labels[s.span_id]] += 1
        elif s.kind == "client" and not any(c.kind == "server" for c in view.children.get(s.span_id, [])):
            # A callee outside the mesh (or unsampled) only shows up as the caller's client span.
            counts[f"{short_operation(view.anchor)} -> {callee_of(s)}"] += 1
    return counts


def _attribution(view: TraceView, span: Span) -> str:
    if span.kind == "server":
        return view.labels[span.span_id]
    servers = [c for c in view.children.get(span.span_id, []) if c.kind == "server"]
    if servers:
        return view.labels[servers[0].span_id]
    parent = view.anchor if span.kind == "client" else span
    return f"{short_operation(parent)} -> {callee_of(span)}"


def critical_path(view: TraceView) -> dict[str, float]:
    """Microseconds of the anchor's critical path owned by each label (client hops count for their callee)."""
    owned: dict[str, float] = defaultdict(float)

    def walk(span: Span, limit: int) -> None:
        start, cursor = span.start_us, min(span.start_us + span.duration_us, limit)
        label = _attribution(view, span)
        kids = sorted(view.children.get(span.span_id, []), key=lambda c: c.start_us + c.duration_us, reverse=True)
        for kid in kids:
            if kid.start_us >= cursor or kid.start_us + kid.duration_us <= start:
                continue  # finishes after the path moved past it, or lies outside the parent
            kid_end = min(kid.start_us + kid.duration_us, cursor)
            owned[label] += cursor - kid_end
            walk(kid, kid_end)
            cursor = max(kid.start_us, start)
        owned[label] += max(cursor - start, 0)

    walk(view.anchor, view.anchor.start_us + view.anchor.duration_us)
    return dict(owned)
