"""Jaeger query adapter: the `TraceSource` port over HTTP (formats.md §3).

* api_v3 `GET /api/v3/traces` (OTLP JSON, snake_case params, which every v3 server knows), or v1
  `GET /api/traces` (internal JSON, removed after Jaeger v2.20). `api: auto` probes once and remembers.
* One sample per subset with a revision filter (`query.attributes` from Jaeger v2.19, v1 `tags`), so a
  small canary is not crowded out of `limit` by the baseline. Servers that cannot filter get one sample
  for both, filtered here. Search returns whole traces, so spans are always re-filtered here too.
* Jaeger applies the limit per request and returns the newest traces first, so one request over a busy
  interval would keep only its last seconds. A sample is therefore taken in slices across the window,
  each with its share of `limit` (a quiet slice passes what it did not use on to the older ones): at
  most `limit` traces per subset per call, whatever the window's length.
* A v3 404 "No traces found" is an empty sample. Timeouts, refused connections, 429 and 5xx are retried
  `retries` times with backoff, then raise `SourceUnavailable` so the tick holds.
"""

from __future__ import annotations

import json
import math
import ssl
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import structlog

from analyzer.config import JaegerSource, RolloutSpec
from analyzer.model import Span
from analyzer.ports import SourceUnavailable
from analyzer.sources.jaeger.parse import (
    SubsetSelector,
    dedupe,
    json_documents,
    parse_otlp,
    parse_v1_envelope,
)

# Spans as a DataFrame: analyzer.traces.spans_frame (pandas; not imported here, so a live daemon does not load it).
__all__ = ["JaegerTraceSource", "selector_for"]

log = structlog.get_logger(__name__)

REVISION_TAG = "istio.canonical_revision"
_RETRY_STATUS = frozenset({408, 429})
_SECOND = timedelta(seconds=1)
SLICE_S = 10.0  # a slice of the window is at least this long...
MAX_SLICES = 12  # ...and a sample takes at most this many requests per subset
MIN_QUOTA = 10  # traces per slice, below which fewer, longer slices are used

Search = Callable[[str, datetime, datetime, Mapping[str, str] | None, int], list["Span"]]


@dataclass(frozen=True)
class Sample:
    """What one subset's (or, without a server-side filter, both subsets') slices brought back."""

    spans: list[Span]
    kept: int  # traces pulled
    estimated: float  # traces the window held, extrapolated from the slices that came back full
    cut: bool  # some slice came back full: the window held more traces than the limit let through


def slices(start: datetime, end: datetime, budget: int) -> list[tuple[datetime, datetime]]:
    """Equal slices of [start, end): about SLICE_S long, at most MAX_SLICES, each with a quota of MIN_QUOTA+."""
    n = max(1, min(MAX_SLICES, budget // MIN_QUOTA, math.ceil((end - start).total_seconds() / SLICE_S)))
    step = (end - start) / n
    return [(start + k * step, end if k == n - 1 else start + (k + 1) * step) for k in range(n)]


def _trace_starts(spans: Sequence[Span]) -> dict[str, int]:
    starts: dict[str, int] = {}
    for s in spans:
        starts[s.trace_id] = min(starts.get(s.trace_id, s.start_us), s.start_us)
    return starts


def sample(search: Search, service: str, start: datetime, end: datetime, tags: Mapping[str, str] | None,
           budget: int) -> Sample:
    """At most `budget` traces spread over [start, end): newest slice first, each with its share of what is left.

    A slice that comes back full kept only its newest traces; how many it held is extrapolated from the
    part of the slice its traces cover (Jaeger returns the newest first).
    """
    parts = slices(start, end, budget)
    spans: list[Span] = []
    left, kept, estimated, cut = budget, 0, 0.0, False
    for k, (lo, hi) in enumerate(reversed(parts)):
        quota = left // (len(parts) - k)
        if quota < 1:
            cut = True
            break
        got = search(service, lo, hi, tags, quota)
        starts = _trace_starts(got)
        n = len(starts)
        spans += got
        kept, left = kept + n, left - n
        if n >= quota:
            cut = True
            oldest = max(_micros(lo), min(starts.values()))
            covered = max(_micros(hi) - oldest, 1)
            estimated += n * max(1.0, (_micros(hi) - _micros(lo)) / covered)
        else:
            estimated += n
    return Sample(spans, kept, estimated, cut)


def _rfc3339(t: datetime) -> str:
    t = t.astimezone(UTC) if t.tzinfo else t.replace(tzinfo=UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond * 1000:09d}Z"


def _micros(t: datetime) -> int:
    t = t if t.tzinfo else t.replace(tzinfo=UTC)
    return int(t.timestamp() * 1_000_000)


def selector_for(spec: RolloutSpec) -> SubsetSelector:
    """The target's app, FQDN and revision -> subset map, from the rollout spec."""
    target = spec.target
    app = target.host.split(".")[0]
    host = target.host if "." in target.host else f"{target.host}.{target.namespace}.svc.cluster.local"
    by_label = {target.baseline.label_value: target.baseline.subset, target.canary.label_value: target.canary.subset}
    return SubsetSelector(app=app, host=host, by_label=by_label)


def _json(response: httpx.Response) -> Any:
    try:
        docs = list(json_documents(response.text))
    except ValueError as exc:
        raise SourceUnavailable(f"jaeger: {response.request.url.path} replied with malformed JSON: {exc}") from exc
    if len(docs) == 1:
        return docs[0]
    # A chunked v3 stream: merge the resourceSpans of every chunk.
    merged = [rs for d in docs for rs in (d.get("result") or d).get("resourceSpans") or []]
    return {"result": {"resourceSpans": merged}}


def _error_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200].strip()
    if isinstance(body, dict):
        if isinstance(body.get("error"), dict):  # v3 {"error":{"httpCode":..,"message":..}}
            return str(body["error"].get("message", ""))
        if body.get("errors"):  # v1 {"errors":[{"code":..,"msg":..}]}
            return "; ".join(str(e.get("msg", "")) for e in body["errors"])
    return response.text[:200].strip()


def _has_key(response: httpx.Response, key: str) -> bool:
    try:
        body = response.json()
    except ValueError:
        return False
    return response.status_code == 200 and isinstance(body, dict) and key in body


def _is_no_traces(response: httpx.Response) -> bool:
    return response.status_code == 404 and "no traces found" in _error_message(response).lower()


class JaegerTraceSource:
    """`TraceSource` for a Jaeger query service (v1 or api_v3)."""

    def __init__(
        self,
        config: JaegerSource,
        *,
        client: httpx.Client | None = None,
        backoff: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.config = config
        self.backoff, self.sleep = backoff, sleep
        verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=config.ca_file) if config.ca_file else True
        self.client = client or httpx.Client(base_url=config.url.rstrip("/"), timeout=config.timeout, verify=verify)
        self._api: tuple[str, bool] | None = None  # (version, server-side tag filtering)

    def close(self) -> None:
        self.client.close()

    # ---- HTTP ----

    def _headers(self) -> dict[str, str]:
        if not self.config.bearer_token_file:
            return {}
        # Read on every call: projected service-account tokens rotate.
        token = Path(self.config.bearer_token_file).read_text().strip()
        return {"Authorization": f"Bearer {token}"}

    def _get(self, path: str, params: Mapping[str, Any]) -> httpx.Response:
        """GET with bounded retries on transport errors, 408/429 and 5xx. Other statuses are returned."""
        attempts = self.config.retries + 1
        problem = ""
        for attempt in range(attempts):
            if attempt:
                self.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                response = self.client.get(path, params=dict(params), headers=self._headers())
            except httpx.TimeoutException as exc:
                problem = f"timed out after {self.config.timeout}s ({type(exc).__name__})"
            except httpx.TransportError as exc:
                problem = f"cannot connect: {exc}"
            else:
                if response.status_code < 500 and response.status_code not in _RETRY_STATUS:
                    return response
                problem = f"HTTP {response.status_code}: {_error_message(response)}"
            log.info("jaeger_retry", path=path, attempt=attempt + 1, attempts=attempts, problem=problem)
        raise SourceUnavailable(f"jaeger: GET {path} failed {attempts} times; last: {problem}")

    def _fail(self, response: httpx.Response) -> SourceUnavailable:
        return SourceUnavailable(
            f"jaeger: GET {response.request.url.path} answered HTTP {response.status_code}: {_error_message(response)}")

    # ---- API choice ----

    def _probe_attributes(self) -> bool:
        # /api/v3/trace-summaries arrived in v2.19.0 together with `query.attributes` (formats.md §3.1);
        # a missing route is Go's plain-text 404, a present one answers JSON (even "No traces found").
        now = datetime.now(UTC)
        params = {"query.service_name": "canary-analyzer-probe", "query.start_time_min": _rfc3339(now - _SECOND),
                  "query.start_time_max": _rfc3339(now), "query.num_traces": 1}
        response = self._get("/api/v3/trace-summaries", params)
        try:
            return isinstance(response.json(), dict)
        except ValueError:
            return False

    def api(self) -> tuple[str, bool]:
        """("v3" | "v1", whether the server filters by tag). Probed once, then cached."""
        if self._api is not None:
            return self._api
        wanted = self.config.api
        if wanted == "v1":
            self._api = ("v1", True)
        elif wanted == "v3":
            self._api = ("v3", self._probe_attributes())
        else:
            # The UI's catch-all answers unknown paths with 200 HTML, so look for the JSON key too.
            if _has_key(self._get("/api/v3/services", {}), "services"):
                self._api = ("v3", self._probe_attributes())
            elif _has_key(self._get("/api/services", {}), "data"):
                self._api = ("v1", True)
            else:
                raise SourceUnavailable(f"jaeger: {self.config.url} serves neither /api/v3 nor /api/traces")
        log.info("jaeger_api", url=self.config.url, api=self._api[0], tag_filter=self._api[1])
        return self._api

    # ---- queries ----

    def _search_v3(self, service: str, start: datetime, end: datetime, tags: Mapping[str, str] | None,
                   limit: int) -> list[Span]:
        params: dict[str, Any] = {
            "query.service_name": service, "query.start_time_min": _rfc3339(start),
            "query.start_time_max": _rfc3339(end), "query.num_traces": limit,
        }
        if tags:
            params["query.attributes"] = json.dumps(dict(tags), separators=(",", ":"))
        response = self._get("/api/v3/traces", params)
        if _is_no_traces(response):
            return []
        if response.status_code != 200:
            raise self._fail(response)
        body = _json(response)
        if not isinstance(body, dict) or not isinstance(body.get("result", body), dict):
            raise SourceUnavailable("jaeger: /api/v3/traces reply is not {\"result\": {...}}")
        return parse_otlp(body)

    def _search_v1(self, service: str, start: datetime, end: datetime, tags: Mapping[str, str] | None,
                   limit: int) -> list[Span]:
        params: dict[str, Any] = {"service": service, "start": _micros(start), "end": _micros(end), "limit": limit}
        if tags:
            params["tags"] = json.dumps(dict(tags), separators=(",", ":"))
        response = self._get("/api/traces", params)
        if response.status_code != 200:
            raise self._fail(response)
        body = _json(response)
        if not isinstance(body, dict) or not isinstance(body.get("data") or [], list):
            raise SourceUnavailable("jaeger: /api/traces reply is not the {\"data\": [...]} envelope")
        return parse_v1_envelope(body)

    def spans(self, spec: RolloutSpec, start: datetime, end: datetime) -> Sequence[Span]:
        """Spans of the traces whose baseline/canary span started in [start, end), subset set where told."""
        selector = selector_for(spec)
        service = self.config.service or f"{selector.app}.{spec.target.namespace}"
        version, tag_filter = self.api()
        search: Search = self._search_v3 if version == "v3" else self._search_v1
        limit = self.config.limit
        try:
            if tag_filter:
                samples = {subset: sample(search, service, start, end, {REVISION_TAG: label}, limit)
                           for label, subset in selector.by_label.items()}
                raw = [s for part in samples.values() for s in part.spans]
            else:
                both = sample(search, service, start, end, None, limit * len(selector.by_label))
                raw = both.spans
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise SourceUnavailable(f"jaeger: reply does not have the documented shape: {exc!r}") from exc
        spans = selector.assign(dedupe(raw))
        kept = _traces_started_in(spans, _micros(start), _micros(end))
        if not tag_filter:
            samples = _split(both, spans, selector.by_label.values())
        for subset, part in samples.items():
            if part.cut:
                # Which subset lost traces, and how many: the analysis then sees a sample, not the window.
                log.warning("jaeger_sample_cut", subset=subset, kept=part.kept, estimated=round(part.estimated),
                            dropped=round(part.estimated - part.kept), limit=limit,
                            window_s=(end - start).total_seconds(), hint="raise sources.traces.limit to see more")
        log.debug("jaeger_spans", api=version, service=service, spans=len(kept),
                  traces={subset: part.kept for subset, part in samples.items()})
        return kept


def _split(both: Sample, spans: Sequence[Span], subsets: Iterable[str]) -> dict[str, Sample]:
    """A shared sample's counts per subset, its estimate shared in proportion to what each subset kept."""
    by_subset: dict[str, set[str]] = {subset: set() for subset in subsets}
    for s in spans:
        if s.subset in by_subset:
            by_subset[s.subset].add(s.trace_id)
    scale = both.estimated / max(both.kept, 1)
    return {subset: Sample([], len(ids), len(ids) * scale, both.cut) for subset, ids in by_subset.items()}


def _traces_started_in(spans: Sequence[Span], lo: int, hi: int) -> list[Span]:
    """Keep whole traces whose earliest subset-tagged span starts in [lo, hi): each trace counts once."""
    anchors: dict[str, int] = {}
    for s in spans:
        if s.subset is not None:
            anchors[s.trace_id] = min(anchors.get(s.trace_id, s.start_us), s.start_us)
    keep = {t for t, begin in anchors.items() if lo <= begin < hi}
    return [s for s in spans if s.trace_id in keep]
