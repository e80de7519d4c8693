"""Pure parsing of Jaeger replies into `Span`s: the v1 JSON trace and OTLP JSON (api_v3, Tempo "batches").

Liberal on purpose (formats.md §3.4): IDs may be hex or base64, enums numbers or names, int64 values strings.
Also holds the subset selector that tells canary from baseline spans (formats.md §3.6).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

from analyzer.model import Span

_HEX = re.compile(r"^[0-9a-fA-F]+$")
_OTLP_KINDS = {0: "unspecified", 1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}
_STATUS_ERROR = {2, "2", "STATUS_CODE_ERROR"}


def normalize_id(raw: Any) -> str:
    """Trace/span ID as lowercase hex: hex passes through, base64 (Tempo, grpc-gateway) is decoded."""
    text = str(raw or "")
    # Hex IDs have 16 or 32 chars; base64 of 8/16 bytes has 12/24, so lengths tell the two apart.
    if _HEX.match(text) and len(text) % 2 == 0 and len(text) in (16, 32):
        return text.lower()
    try:
        return base64.b64decode(text, validate=True).hex()
    except (binascii.Error, ValueError):
        return text.lower()


def _kind(raw: Any) -> str:
    if raw is None or raw == "":
        return "unspecified"
    if isinstance(raw, int) or (isinstance(raw, str) and raw.isdigit()):
        return _OTLP_KINDS.get(int(raw), "unspecified")
    name = str(raw).lower().removeprefix("span_kind_")
    return name if name in _OTLP_KINDS.values() else "unspecified"


def _v1_value(tag: Mapping[str, Any]) -> Any:
    kind, value = tag.get("type", "string"), tag.get("value")
    if kind == "int64":
        return int(value)  # beyond 2^53 it arrives as a JSON string
    if kind == "float64":
        return float(value)
    if kind == "bool":
        return value if isinstance(value, bool) else str(value).lower() == "true"
    if kind == "binary":
        return base64.b64decode(value)
    return value


def _otlp_value(value: Mapping[str, Any]) -> Any:
    if "stringValue" in value:
        return value["stringValue"]
    if "intValue" in value:
        return int(value["intValue"])  # proto3 JSON writes int64 as a string
    if "boolValue" in value:
        return bool(value["boolValue"])
    if "doubleValue" in value:
        return float(value["doubleValue"])
    if "bytesValue" in value:
        return base64.b64decode(value["bytesValue"])
    if "arrayValue" in value:
        return [_otlp_value(v) for v in value["arrayValue"].get("values", [])]
    if "kvlistValue" in value:
        return _otlp_attrs(value["kvlistValue"].get("values", []))
    return None


def _otlp_attrs(items: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    return {kv["key"]: _otlp_value(kv.get("value") or {}) for kv in items}


def _http_status(attrs: Mapping[str, Any]) -> int | None:
    raw = attrs.get("http.status_code", attrs.get("http.response.status_code"))
    try:
        return None if raw is None or raw == "" else int(raw)
    except (TypeError, ValueError):
        return None


def _is_error(attrs: Mapping[str, Any], status: int | None) -> bool:
    flag = attrs.get("error")
    # Envoy sets `error` for 5xx or no response; Zipkin conversion makes it a bool, Kiali accepts "true" too.
    return flag is True or str(flag).lower() == "true" or (status is not None and status >= 500)


# ---- v1 (internal JSON API) ----


def _v1_parent(span: Mapping[str, Any], trace_id: str) -> str | None:
    refs = span.get("references") or []
    for wanted in ("CHILD_OF", "FOLLOWS_FROM"):
        for ref in refs:
            if ref.get("refType") == wanted and normalize_id(ref.get("traceID")) == trace_id:
                return normalize_id(ref.get("spanID"))
    parent = span.get("parentSpanID")
    return normalize_id(parent) if parent and parent.strip("0") else None


def parse_v1_trace(trace: Mapping[str, Any]) -> list[Span]:
    """One v1 trace object ({traceID, spans, processes}) -> spans."""
    processes = trace.get("processes") or {}
    out = []
    for raw in trace.get("spans") or []:
        trace_id = normalize_id(raw.get("traceID") or trace.get("traceID"))
        process = raw.get("process") or processes.get(raw.get("processID"), {})
        attrs = {t["key"]: _v1_value(t) for t in process.get("tags") or []}
        attrs.update({t["key"]: _v1_value(t) for t in raw.get("tags") or []})
        status = _http_status(attrs)
        out.append(Span(
            trace_id=trace_id,
            span_id=normalize_id(raw.get("spanID")),
            parent_id=_v1_parent(raw, trace_id),
            service=process.get("serviceName", ""),
            operation=raw.get("operationName", ""),
            kind=_kind(attrs.get("span.kind")),
            start_us=int(raw.get("startTime", 0)),
            duration_us=int(raw.get("duration", 0)),
            error=_is_error(attrs, status),
            http_status=status,
            subset=None,
            attributes=attrs,
        ))
    return out


def parse_v1_envelope(body: Mapping[str, Any]) -> list[Span]:
    """`{"data": [trace, ...], "errors": ...}` from GET /api/traces -> spans."""
    return [s for trace in body.get("data") or [] for s in parse_v1_trace(trace)]


# ---- OTLP JSON (api_v3 and Tempo) ----


def _otlp_span(raw: Mapping[str, Any], service: str, resource: Mapping[str, Any]) -> Span:
    attrs = {**resource, **_otlp_attrs(raw.get("attributes") or [])}
    start_ns = int(raw.get("startTimeUnixNano") or 0)
    end_ns = int(raw.get("endTimeUnixNano") or start_ns)
    status = _http_status(attrs)
    parent = raw.get("parentSpanId")
    error = (raw.get("status") or {}).get("code") in _STATUS_ERROR or _is_error(attrs, status)
    return Span(
        trace_id=normalize_id(raw.get("traceId")),
        span_id=normalize_id(raw.get("spanId")),
        parent_id=normalize_id(parent) if parent else None,
        service=service,
        operation=raw.get("name", ""),
        kind=_kind(raw.get("kind")),
        start_us=start_ns // 1000,
        duration_us=max(0, end_ns - start_ns) // 1000,
        error=error,
        http_status=status,
        subset=None,
        attributes=attrs,
    )


def parse_otlp(body: Mapping[str, Any]) -> list[Span]:
    """`{"result": {"resourceSpans": ...}}`, bare `{"resourceSpans": ...}` or Tempo `{"batches": ...}` -> spans."""
    inner = body.get("result", body)
    out = []
    for rs in inner.get("resourceSpans") or inner.get("batches") or []:
        resource = _otlp_attrs((rs.get("resource") or {}).get("attributes") or [])
        service = str(resource.get("service.name", ""))
        for ss in rs.get("scopeSpans") or rs.get("instrumentationLibrarySpans") or []:
            out.extend(_otlp_span(raw, service, resource) for raw in ss.get("spans") or [])
    return out


def json_documents(text: str) -> Iterator[Any]:
    """One or more concatenated JSON documents (api_v3 may stream the result in chunks)."""
    decoder, pos = json.JSONDecoder(), 0
    while pos < len(text):
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos == len(text):
            return
        doc, pos = decoder.raw_decode(text, pos)
        yield doc


def dedupe(spans: Iterable[Span]) -> list[Span]:
    """Drop repeats (the same trace comes back from both subset queries; v1 may repeat a span)."""
    seen: set[tuple[str, str, str, int]] = set()
    out = []
    for s in spans:
        key = (s.trace_id, s.span_id, s.kind, s.start_us)
        if key not in seen:
            seen.add(key)
            out.append(s)
    return out


# ---- telling canary from baseline (formats.md §3.6) ----

_POD_SUFFIX = re.compile(r"-[a-z0-9]{5}$")
_RS_HASH = re.compile(r"-[a-z0-9]{6,10}$")
_ORDINAL = re.compile(r"-\d+$")


def parse_upstream_cluster(value: str) -> tuple[str, str, str, str] | None:
    """`outbound|9080|v2|reviews.bookinfo.svc.cluster.local` -> (direction, port, subset, fqdn)."""
    parts = value.split("|")
    return (parts[0], parts[1], parts[2], parts[3]) if len(parts) == 4 else None


def parse_node_id(value: str) -> tuple[str, str, str] | None:
    """`sidecar~IP~POD.NS~NS.svc.cluster.local` -> (proxy type, pod, namespace)."""
    parts = value.split("~")
    if len(parts) != 4 or "." not in parts[2]:
        return None
    pod, _, namespace = parts[2].rpartition(".")
    return parts[0], pod, namespace


def workload_of_pod(pod: str) -> str:
    """Strip the pod and ReplicaSet hashes (Deployment) or the ordinal (StatefulSet), as Kiali does."""
    if _ORDINAL.search(pod):
        return _ORDINAL.sub("", pod)
    stripped = _POD_SUFFIX.sub("", pod)
    return _RS_HASH.sub("", stripped) if stripped != pod else pod


@dataclass(frozen=True)
class SubsetSelector:
    """Maps a span to the rollout's subset name, or None when it belongs to neither."""

    app: str  # istio.canonical_service of the target, e.g. "reviews"
    host: str  # the target's FQDN, e.g. "reviews.bookinfo.svc.cluster.local"
    by_label: Mapping[str, str]  # canonical revision (SubsetRef.label_value) -> subset name

    def _by_suffix(self, name: str) -> str | None:
        # Host-based canaries: workload/service/host "reviews-canary" or "reviews-v2" names the subset.
        for label, subset in self.by_label.items():
            if name in (label, f"{self.app}-{label}") or name.endswith(f"-{label}"):
                return subset
        return None

    def subset_of(self, span: Span) -> str | None:
        attrs = span.attributes
        owner = str(attrs.get("istio.canonical_service", ""))
        if owner == self.app or owner.startswith(f"{self.app}-"):
            # Emitted by the target's own sidecar: its revision is authoritative.
            subset = self.by_label.get(str(attrs.get("istio.canonical_revision", "")))
            if subset is None and owner != self.app:
                subset = self._by_suffix(owner)
            if subset is None and (node := parse_node_id(str(attrs.get("node_id", "")))):
                subset = self._by_suffix(workload_of_pod(node[1]))
            return subset
        if span.kind == "client" and (uc := parse_upstream_cluster(str(attrs.get("upstream_cluster", "")))):
            direction, _, subset_field, fqdn = uc
            host_label = fqdn.split(".")[0]
            if direction != "outbound" or not (fqdn == self.host or host_label.startswith(self.app)):
                return None
            if subset_field:
                names = set(self.by_label.values())
                return subset_field if subset_field in names else self.by_label.get(subset_field)
            return self._by_suffix(host_label) if host_label != self.app else None
        return None

    def assign(self, spans: Iterable[Span]) -> list[Span]:
        return [replace(s, subset=self.subset_of(s)) for s in spans]
