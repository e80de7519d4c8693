"""A protocol-level fake of the Jaeger query service (stdlib http.server on 127.0.0.1, free port, own thread).

It serves `Span`s in the real wire shapes (formats.md §3.2–§3.4): v1 `GET /api/traces` with the
`{"data": [...]}` envelope, api_v3 `GET /api/v3/traces` with `{"result": {"resourceSpans": [...]}}`
(hex IDs, numeric kinds), the v3 404 "No traces found", 400s for bad params, and unknown routes as Go's
plain-text 404. Which endpoints exist and whether `query.attributes` is honoured follow the Jaeger
version being imitated. Failures and slow replies can be injected per request.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections import defaultdict, deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from analyzer.model import Span

_KIND_NUMBER = {"unspecified": 0, "internal": 1, "server": 2, "client": 3, "producer": 4, "consumer": 5}


# ---- encoders: Span -> wire JSON ----


def _v1_tag(key: str, value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"key": key, "type": "bool", "value": value}
    if isinstance(value, int):
        # int64 beyond 2^53 goes out as a string, as Jaeger does
        return {"key": key, "type": "int64", "value": str(value) if abs(value) > 2**53 else value}
    if isinstance(value, float):
        return {"key": key, "type": "float64", "value": value}
    return {"key": key, "type": "string", "value": str(value)}


def v1_trace(spans: list[Span]) -> dict[str, Any]:
    """A v1 trace object (internal/uimodel): spans with processID, processes p1.., references CHILD_OF."""
    services = sorted({s.service for s in spans})
    pid = {svc: f"p{i + 1}" for i, svc in enumerate(services)}
    out = []
    for s in spans:
        tags = [_v1_tag(k, v) for k, v in s.attributes.items()]
        refs = [{"refType": "CHILD_OF", "traceID": s.trace_id, "spanID": s.parent_id}] if s.parent_id else []
        out.append({"traceID": s.trace_id, "spanID": s.span_id, "operationName": s.operation, "references": refs,
                    "startTime": s.start_us, "duration": s.duration_us, "tags": tags, "logs": [],
                    "processID": pid[s.service], "warnings": None})
    return {"traceID": spans[0].trace_id, "spans": out,
            "processes": {pid[svc]: {"serviceName": svc, "tags": []} for svc in services}, "warnings": None}


def _otlp_value(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    return {"stringValue": str(value)}


def otlp_resource_spans(spans: Iterable[Span]) -> list[dict[str, Any]]:
    """OTLP JSON as Jaeger's api_v3 writes it: one resourceSpans per service, hex IDs, numeric enums."""
    by_service: dict[str, list[Span]] = defaultdict(list)
    for s in spans:
        by_service[s.service].append(s)
    out = []
    for service, members in by_service.items():
        rows = []
        for s in members:
            row: dict[str, Any] = {
                "traceId": s.trace_id, "spanId": s.span_id, "name": s.operation, "kind": _KIND_NUMBER[s.kind],
                "startTimeUnixNano": str(s.start_us * 1000),
                "endTimeUnixNano": str((s.start_us + s.duration_us) * 1000),
                "attributes": [{"key": k, "value": _otlp_value(v)} for k, v in s.attributes.items()],
                "status": {"code": 2} if s.error else {},
            }
            if s.parent_id:
                row["parentSpanId"] = s.parent_id
            rows.append(row)
        resource = {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]}
        out.append({"resource": resource, "scopeSpans": [{"scope": {}, "spans": rows}]})
    return out


# ---- the server ----


@dataclass
class Injected:
    status: int
    body: str
    delay: float = 0.0
    path_prefix: str = "/"


@dataclass
class FakeJaeger:
    """State of the fake. `version` picks the endpoints: "v2.19" (v3 + attributes, no v1 search),
    "v2.10" (v3 without attributes, v1 search), "v1.50" (v1 only)."""

    spans: list[Span] = field(default_factory=list)
    version: str = "v2.19"
    delay: float = 0.0  # seconds before every reply (slow server)
    injected: deque[Injected] = field(default_factory=deque)
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    authorizations: list[str | None] = field(default_factory=list)  # the Authorization header of each request
    url: str = ""

    @property
    def has_v1(self) -> bool:
        return self.version != "v2.19"

    @property
    def has_v3(self) -> bool:
        return self.version != "v1.50"

    @property
    def v3_attributes(self) -> bool:
        return self.version == "v2.19"

    def fail_next(self, status: int, body: str = "", *, times: int = 1, delay: float = 0.0,
                  path_prefix: str = "/") -> None:
        for _ in range(times):
            self.injected.append(Injected(status, body, delay, path_prefix))

    def _traces(self, service: str, lo_us: int, hi_us: int, tags: dict[str, str], limit: int) -> list[list[Span]]:
        def matches(s: Span) -> bool:
            return (lo_us <= s.start_us <= hi_us and s.service == service
                    and all(str(s.attributes.get(k)) == v for k, v in tags.items()))

        spans = list(self.spans)  # a simulated mesh may append while a request is served
        hit = {s.trace_id for s in spans if matches(s)}
        by_trace: dict[str, list[Span]] = defaultdict(list)
        for s in spans:
            if s.trace_id in hit:
                by_trace[s.trace_id].append(s)
        hits = list(by_trace.values())
        hits.sort(key=lambda m: min(s.start_us for s in m), reverse=True)  # newest first, like Jaeger
        return hits[:limit]


def _rfc3339_us(text: str) -> int:
    # RFC-3339 with nanoseconds; Python parses at most microseconds.
    head, _, frac = text.rstrip("Z").partition(".")
    base = datetime.fromisoformat(head + "+00:00")
    return int(base.timestamp()) * 1_000_000 + int((frac or "0")[:6].ljust(6, "0"))


class _Handler(BaseHTTPRequestHandler):
    fake: FakeJaeger

    def log_message(self, format: str, *args: Any) -> None:  # keep pytest output clean
        pass

    def _send(self, status: int, body: Any, content_type: str = "application/json") -> None:
        data = body if isinstance(body, str) else json.dumps(body)
        raw = data.encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client timed out and left, as slow-server tests intend

    def _v3_error(self, status: int, message: str) -> None:
        self._send(status, {"error": {"httpCode": status, "message": message}})

    def _v1_error(self, status: int, message: str) -> None:
        self._send(status, {"data": None, "total": 0, "limit": 0, "offset": 0,
                            "errors": [{"code": status, "msg": message}]})

    def do_GET(self) -> None:
        fake = self.fake
        url = urlsplit(self.path)
        params = {k: v[-1] for k, v in parse_qs(url.query).items()}
        fake.requests.append((url.path, params))
        fake.authorizations.append(self.headers.get("Authorization"))
        if fake.injected and url.path.startswith(fake.injected[0].path_prefix):
            injected = fake.injected.popleft()
            time.sleep(injected.delay)
            self._send(injected.status, injected.body or json.dumps(
                {"error": {"httpCode": injected.status, "message": "injected failure"}}))
            return
        time.sleep(fake.delay)
        route = {
            "/api/v3/services": (fake.has_v3, self._v3_services),
            "/api/v3/traces": (fake.has_v3, self._v3_traces),
            "/api/v3/trace-summaries": (fake.v3_attributes, self._v3_summaries),
            "/api/services": (fake.has_v1, self._v1_services),
            "/api/traces": (fake.has_v1, self._v1_traces),
        }.get(url.path)
        if route is None or not route[0]:
            self._send(404, "404 page not found\n", "text/plain; charset=utf-8")  # Go's mux default
            return
        route[1](params)

    def _services(self) -> list[str]:
        return sorted({s.service for s in self.fake.spans})

    def _v3_services(self, params: dict[str, str]) -> None:
        self._send(200, {"services": self._services()})

    def _v1_services(self, params: dict[str, str]) -> None:
        services = self._services()
        self._send(200, {"data": services, "total": len(services), "limit": 0, "offset": 0, "errors": None})

    def _v3_window(self, params: dict[str, str]) -> tuple[int, int] | None:
        lo, hi = params.get("query.start_time_min"), params.get("query.start_time_max")
        if not lo or not hi:
            self._v3_error(400, "query.startTimeMin and query.startTimeMax are required")
            return None
        try:
            return _rfc3339_us(lo), _rfc3339_us(hi)
        except ValueError as exc:
            self._v3_error(400, f"cannot parse query.start_time_min: {exc}")
            return None

    def _v3_traces(self, params: dict[str, str]) -> None:
        window = self._v3_window(params)
        if window is None:
            return
        # Before v2.19 the HTTP gateway ignores attributes (formats.md §3.1).
        tags = json.loads(params.get("query.attributes", "{}")) if self.fake.v3_attributes else {}
        limit = int(params.get("query.num_traces", params.get("query.search_depth", 100)))
        traces = self.fake._traces(params.get("query.service_name", ""), *window, tags, limit)
        if not traces:
            self._v3_error(404, "No traces found")
            return
        self._send(200, {"result": {"resourceSpans": otlp_resource_spans(s for t in traces for s in t)}})

    def _v3_summaries(self, params: dict[str, str]) -> None:
        window = self._v3_window(params)
        if window is None:
            return
        traces = self.fake._traces(params.get("query.service_name", ""), *window, {}, 100)
        if not traces:
            self._v3_error(404, "No traces found")
            return
        self._send(200, {"summaries": [{"traceId": t[0].trace_id, "spanCount": len(t)} for t in traces]})

    def _v1_traces(self, params: dict[str, str]) -> None:
        if not params.get("service"):
            self._v1_error(400, "parameter 'service' is required")
            return
        try:
            lo, hi = int(params.get("start", 0)), int(params.get("end", 2**62))
        except ValueError as exc:
            self._v1_error(400, f"unable to parse param 'start': {exc}")
            return
        tags = json.loads(params.get("tags", "{}"))
        traces = self.fake._traces(params["service"], lo, hi, tags, int(params.get("limit", 100)))
        self._send(200, {"data": [v1_trace(t) for t in traces], "total": len(traces), "limit": 0, "offset": 0,
                         "errors": None})


@contextmanager
def serve_jaeger(fake: FakeJaeger, *, tls: tuple[str, str] | None = None) -> Iterator[FakeJaeger]:
    """Run the fake on 127.0.0.1 at a free port; `fake.url` is set while the block runs.

    `tls` = (certificate file, key file) serves HTTPS instead.
    """
    handler = type("Handler", (_Handler,), {"fake": fake})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    if tls:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*tls)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, name="fake-jaeger",
                              daemon=True)
    thread.start()
    fake.url = f"{'https' if tls else 'http'}://127.0.0.1:{server.server_address[1]}"
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
