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
from analyzer.sources.jaeger.source import JaegerTraceSource
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
    assert len(searched) == searches


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
    assert len([1 for path, _ in server.requests if path == "/api/v3/traces"]) == 2  # no retries


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
    assert len([1 for path, _ in server.requests if path == "/api/v3/traces"]) == 4  # 3 + 1 for the other subset


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
