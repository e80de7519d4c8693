"""JaegerTraceSource over real HTTP against the protocol-level fake (tests/fakes/jaeger_server.py)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from analyzer.config import JaegerSource, RolloutSpec, parse_spec
from analyzer.model import Span
from analyzer.ports import SourceUnavailable
from analyzer.sim.traces import generate_spans, trace_scenario
from analyzer.sources.jaeger.source import JaegerTraceSource, _micros, slices
from tests.fakes.jaeger_server import FakeJaeger, serve_jaeger

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


def _spec(**jaeger: Any) -> RolloutSpec:
    return parse_spec({
        "metadata": {"name": "reviews-rollout"},
        "target": {"namespace": "bookinfo", "virtualService": "reviews", "host": "reviews",
                   "baseline": {"subset": "v1"}, "canary": {"subset": "v2"}},
        "strategy": {"steps": [10, 50]},
        "sources": {"traces": {"type": "jaeger", **jaeger}},
    })


def _sim_spans(minutes: int = 3, seed: int = 3) -> list[Span]:
    scenario = trace_scenario({"preset": "trace-healthy", "samplingRate": 1.0})
    rng = np.random.default_rng(seed)
    out: list[Span] = []
    for k in range(minutes):
        out += generate_spans(rng, scenario, T0 + k * MINUTE, T0 + (k + 1) * MINUTE, {"v1": 12, "v2": 6},
                              canary_subset="v2")
    return out


def _key(s: Span) -> tuple[Any, ...]:
    return (s.trace_id, s.span_id, s.parent_id, s.service, s.operation, s.kind, s.start_us, s.duration_us,
            s.error, s.http_status, s.subset)


@pytest.fixture
def truth() -> list[Span]:
    return _sim_spans()


@pytest.fixture
def server(truth: list[Span], request: pytest.FixtureRequest) -> Iterator[FakeJaeger]:
    version = getattr(request, "param", "v2.19")
    # The server knows nothing about subsets: strip them, the client must find them again.
    with serve_jaeger(FakeJaeger(spans=[replace(s, subset=None) for s in truth], version=version)) as fake:
        yield fake


def _source(fake: FakeJaeger, **options: Any) -> tuple[JaegerTraceSource, RolloutSpec]:
    spec = _spec(url=fake.url, **options)
    assert isinstance(spec.sources.traces, JaegerSource)
    return JaegerTraceSource(spec.sources.traces, backoff=0.01), spec


@pytest.mark.parametrize(
    ("server", "api", "searches"),
    [("v2.19", ("v3", True), 2), ("v2.10", ("v3", False), 1), ("v1.50", ("v1", True), 2)],
    indirect=["server"],
)
def test_auto_api_returns_the_window_with_subsets(
    server: FakeJaeger, truth: list[Span], api: tuple[str, bool], searches: int
) -> None:
    source, spec = _source(server)
    got = source.spans(spec, T0 + MINUTE, T0 + 2 * MINUTE)
    assert source.api() == api
    in_window = {s.trace_id for s in truth if s.parent_id is None and T0 + MINUTE <= _at(s) < T0 + 2 * MINUTE}
    expected = sorted(_key(s) for s in truth if s.trace_id in in_window)
    assert sorted(_key(s) for s in got) == expected  # same spans, same subsets as the simulator set
    assert {s.subset for s in got} >= {"v1", "v2"}
    search_path = "/api/v3/traces" if api[0] == "v3" else "/api/traces"
    searched = [p for path, p in server.requests if path == search_path]
    assert len(searched) == searches * len(slices(T0, T0 + MINUTE, 200))  # one per slice of the minute


def _at(span: Span) -> datetime:
    return datetime.fromtimestamp(span.start_us / 1e6, UTC)


@pytest.mark.parametrize("server", ["v2.19"], indirect=True)
def test_v3_wire_parameters(server: FakeJaeger) -> None:
    source, spec = _source(server, limit=7)
    source.spans(spec, T0, T0 + MINUTE)
    searches = [p for path, p in server.requests if path == "/api/v3/traces"]
    assert [json.loads(p["query.attributes"]) for p in searches] == [
        {"istio.canonical_revision": "v1"}, {"istio.canonical_revision": "v2"}]
    first = searches[0]
    assert first["query.service_name"] == "reviews.bookinfo"
    assert first["query.start_time_min"] == "2026-03-01T12:00:00.000000000Z"
    assert first["query.start_time_max"] == "2026-03-01T12:01:00.000000000Z"
    assert first["query.num_traces"] == "7"


@pytest.mark.parametrize("server", ["v1.50"], indirect=True)
def test_v1_wire_parameters_and_limit(server: FakeJaeger, truth: list[Span]) -> None:
    source, spec = _source(server, limit=2, service="reviews.custom")
    server.spans = [replace(s, service="reviews.custom") if s.service == "reviews.bookinfo" else s
                    for s in server.spans]
    got = source.spans(spec, T0, T0 + 3 * MINUTE)
    searches = [p for path, p in server.requests if path == "/api/traces"]
    assert [json.loads(p["tags"]) for p in searches] == [
        {"istio.canonical_revision": "v1"}, {"istio.canonical_revision": "v2"}]
    assert searches[0]["service"] == "reviews.custom" and searches[0]["limit"] == "2"
    assert searches[0]["start"] == str(int(T0.timestamp() * 1e6))
    assert len({s.trace_id for s in got}) == 4  # 2 per subset: the limit holds per query


@pytest.mark.parametrize("server", ["v2.19"], indirect=True)
def test_v3_no_traces_404_is_an_empty_sample(server: FakeJaeger) -> None:
    source, spec = _source(server)
    assert source.spans(spec, T0 + 60 * MINUTE, T0 + 61 * MINUTE) == []
    # One request per slice and subset, no retries.
    assert len([1 for path, _ in server.requests if path == "/api/v3/traces"]) == 2 * len(
        slices(T0, T0 + MINUTE, 200))


@pytest.mark.parametrize("server", ["v2.19"], indirect=True)
def test_v1_forced_on_a_server_without_v1_search(server: FakeJaeger) -> None:
    source, spec = _source(server, api="v1")
    with pytest.raises(SourceUnavailable, match="HTTP 404: 404 page not found"):
        source.spans(spec, T0, T0 + MINUTE)


@pytest.mark.parametrize("server", ["v2.19"], indirect=True)
def test_server_errors_are_retried_then_succeed(server: FakeJaeger, truth: list[Span]) -> None:
    source, spec = _source(server, retries=2)
    source.api()
    server.fail_next(500, times=2, path_prefix="/api/v3/traces")
    got = source.spans(spec, T0, T0 + MINUTE)
    assert got  # the third attempt answered
    # 3 for the first slice, 1 for each other slice of both subsets.
    assert len([1 for path, _ in server.requests if path == "/api/v3/traces"]) == 2 + 2 * len(
        slices(T0, T0 + MINUTE, 200))


@pytest.mark.parametrize("server", ["v2.19"], indirect=True)
def test_persistent_server_errors_raise_after_bounded_retries(server: FakeJaeger) -> None:
    source, spec = _source(server, retries=2)
    source.api()
    server.fail_next(503, times=5, path_prefix="/api/v3/traces")
    with pytest.raises(SourceUnavailable, match=r"failed 3 times; last: HTTP 503: injected failure"):
        source.spans(spec, T0, T0 + MINUTE)
    assert len([1 for path, _ in server.requests if path == "/api/v3/traces"]) == 3


@pytest.mark.parametrize("server", ["v2.19"], indirect=True)
def test_bad_request_is_not_retried(server: FakeJaeger) -> None:
    source, spec = _source(server, retries=3)
    source.api()
    message = "query.startTimeMin and query.startTimeMax are required"
    server.fail_next(400, json.dumps({"error": {"httpCode": 400, "message": message}}), path_prefix="/api/v3/traces")
    with pytest.raises(SourceUnavailable, match=re.escape(f"HTTP 400: {message}")):
        source.spans(spec, T0, T0 + MINUTE)
    assert len([1 for path, _ in server.requests if path == "/api/v3/traces"]) == 1


@pytest.mark.parametrize("server", ["v2.19"], indirect=True)
def test_slow_server_times_out_within_bounds(server: FakeJaeger) -> None:
    source, spec = _source(server, timeout="200ms", retries=1)
    source.api()
    server.fail_next(200, "{}", times=2, delay=1.0, path_prefix="/api/v3/traces")
    started = time.monotonic()
    with pytest.raises(SourceUnavailable, match=re.escape("timed out after 0.2s")):
        source.spans(spec, T0, T0 + MINUTE)
    assert time.monotonic() - started < 1.5  # two attempts of 0.2 s plus backoff, not the server's 2 s


@pytest.mark.parametrize("server", ["v2.19"], indirect=True)
def test_malformed_json_is_unavailable(server: FakeJaeger) -> None:
    source, spec = _source(server, retries=0)
    source.api()
    server.fail_next(200, '{"result": {"resourceSpans": [', path_prefix="/api/v3/traces")
    with pytest.raises(SourceUnavailable, match="malformed JSON"):
        source.spans(spec, T0, T0 + MINUTE)


def test_unreachable_server_is_unavailable() -> None:
    with serve_jaeger(FakeJaeger()) as fake:
        url = fake.url
    spec = _spec(url=url, retries=1)
    assert isinstance(spec.sources.traces, JaegerSource)
    with pytest.raises(SourceUnavailable, match="cannot connect"):
        JaegerTraceSource(spec.sources.traces, backoff=0.01).spans(spec, T0, T0 + MINUTE)


@pytest.mark.parametrize("server", ["v2.10"], indirect=True)
def test_bearer_token_is_sent_and_reread(server: FakeJaeger, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("first\n")
    source, spec = _source(server, bearer_token_file=str(token))
    source.spans(spec, T0, T0 + MINUTE)
    token.write_text("second")
    source.spans(spec, T0 + MINUTE, T0 + 2 * MINUTE)
    assert server.authorizations[0] == "Bearer first"
    assert server.authorizations[-1] == "Bearer second"


@pytest.mark.parametrize("server", ["v2.10"], indirect=True)
def test_each_trace_counts_in_one_interval_only(server: FakeJaeger, truth: list[Span]) -> None:
    source, spec = _source(server)
    seen: list[str] = []
    for k in range(4):
        seen += sorted({s.trace_id for s in source.spans(spec, T0 + k * MINUTE, T0 + (k + 1) * MINUTE)})
    assert len(seen) == len(set(seen)) == len({s.trace_id for s in truth})


def test_tls_with_a_private_ca_file(truth: list[Span], tmp_path: Path) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=jaeger",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    with serve_jaeger(FakeJaeger(spans=truth, version="v2.19"), tls=(str(cert), str(key))) as fake:
        source, spec = _source(fake, ca_file=str(cert), retries=0)
        assert source.spans(spec, T0, T0 + MINUTE)
        untrusting, _ = _source(fake, retries=0)  # the system trust store does not know this CA
        with pytest.raises(SourceUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
            untrusting.spans(spec, T0, T0 + MINUTE)


# ---- sampling: Jaeger keeps the newest `limit` traces per request ----


def _steady(rates: dict[str, float], seconds: float, start: datetime = T0) -> list[Span]:
    """One reviews server span per trace, evenly spaced at `rates` traces per second per revision."""
    out: list[Span] = []
    t0 = int(start.timestamp() * 1e6)
    for r, (revision, rate) in enumerate(rates.items()):
        n = int(rate * seconds)
        for i in range(n):
            at = t0 + int((i + 0.5) * seconds * 1e6 / n)
            out.append(Span(f"{r + 1:08x}{i:024x}", f"{i:016x}", None, "reviews.bookinfo", "reviews:9080/*", "server",
                            at, 4000, False, 200, None, {"istio.canonical_service": "reviews",
                                                         "istio.canonical_revision": revision}))
    return out


def _requested(fake: FakeJaeger, revision: str) -> int:
    """Traces asked for with one revision's filter: the most the server could send back."""
    return sum(int(p["query.num_traces"]) for path, p in fake.requests if path == "/api/v3/traces"
               and json.loads(p["query.attributes"])["istio.canonical_revision"] == revision)


def test_a_busy_minute_is_sampled_across_the_whole_window_within_the_limit() -> None:
    from structlog.testing import capture_logs

    # About 8 baseline traces per second: one request with limit 200 kept only the newest ~25 s.
    with serve_jaeger(FakeJaeger(spans=_steady({"v1": 8, "v2": 1}, 60), version="v2.19")) as fake:
        source, spec = _source(fake, limit=200)
        with capture_logs() as logs:
            got = source.spans(spec, T0, T0 + MINUTE)
    starts = {s.trace_id: s.start_us for s in got}
    baseline = [t for s in got if s.subset == "v1" for t in [starts[s.trace_id]]]
    canary = {s.trace_id for s in got if s.subset == "v2"}
    assert len(canary) == 60  # the canary is not crowded out: its own limit, all of its traces
    assert 150 <= len(baseline) <= 200 and _requested(fake, "v1") <= 200
    t0 = T0.timestamp() * 1e6
    per_ten_seconds = np.bincount([int((b - t0) // 10e6) for b in baseline], minlength=6)
    assert per_ten_seconds.min() >= 20, per_ten_seconds  # every part of the minute is in the sample
    (cut,) = [e for e in logs if e["event"] == "jaeger_sample_cut"]
    assert cut["subset"] == "v1" and cut["kept"] == len(baseline) and cut["limit"] == 200
    assert cut["estimated"] == pytest.approx(480, rel=0.05)
    assert cut["dropped"] == pytest.approx(480 - len(baseline), abs=25)


def test_an_hour_window_pulls_no_more_than_the_limit() -> None:
    hour = 60 * MINUTE
    with serve_jaeger(FakeJaeger(spans=_steady({"v1": 2, "v2": 0.25}, 3600), version="v2.19")) as fake:
        source, spec = _source(fake, limit=200)
        got = source.spans(spec, T0, T0 + hour)
    parts = slices(T0, T0 + hour, 200)
    assert len(parts) == 12
    for revision in ("v1", "v2"):  # 7,200 and 900 traces in the hour
        assert _requested(fake, revision) <= 200
        kept = {s.start_us for s in got if s.subset == revision}
        assert 150 <= len(kept) <= 200, (revision, len(kept))
        # Spread over the hour: every slice of it holds part of the sample.
        assert all(any(_micros(lo) <= k < _micros(hi) for k in kept) for lo, hi in parts), revision


def test_without_a_server_side_filter_both_subsets_share_twice_the_limit() -> None:
    from structlog.testing import capture_logs

    with serve_jaeger(FakeJaeger(spans=_steady({"v1": 8, "v2": 2}, 60), version="v2.10")) as fake:
        source, spec = _source(fake, limit=100)
        with capture_logs() as logs:
            got = source.spans(spec, T0, T0 + MINUTE)
    asked = sum(int(p["query.num_traces"]) for path, p in fake.requests if path == "/api/v3/traces")
    assert asked <= 200 and len({s.trace_id for s in got}) <= 200
    cut = {e["subset"]: e for e in logs if e["event"] == "jaeger_sample_cut"}
    assert set(cut) == {"v1", "v2"}
    assert cut["v1"]["estimated"] + cut["v2"]["estimated"] == pytest.approx(600, rel=0.1)


def test_a_quiet_window_is_complete_and_not_reported_as_cut() -> None:
    from structlog.testing import capture_logs

    with serve_jaeger(FakeJaeger(spans=_steady({"v1": 2, "v2": 0.5}, 60), version="v2.19")) as fake:
        source, spec = _source(fake, limit=200)
        with capture_logs() as logs:
            got = source.spans(spec, T0, T0 + MINUTE)
    assert len({s.trace_id for s in got}) == 150
    assert not [e for e in logs if e["event"] == "jaeger_sample_cut"]
