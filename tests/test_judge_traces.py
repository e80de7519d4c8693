"""`canary-analyzer judge` with Jaeger: a real Prometheus backfilled with a healthy window, traces served over
HTTP by the fake Jaeger query service, one trace scenario per test."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from analyzer.app.cli import main
from analyzer.model import Span
from analyzer.sim.exposition import Pod
from analyzer.sim.traces import generate_spans, trace_scenario
from tests.fakes.jaeger_server import FakeJaeger, serve_jaeger
from tests.judge_support import INTERVAL, PROMETHEUS, backfill, judge_spec, poisson_counts, window_start

if TYPE_CHECKING:
    from tests.servers_prometheus import PrometheusLauncher, RunningPrometheus

pytest_plugins = ["tests.servers_prometheus"]

INTERVALS = 12
TRACES_PER_MINUTE = {"v1": 60, "v2": 30}  # sampled traces per subset per interval in Jaeger

ERRORS_ONLY = "[{type: error-rate}]"
# The URL is never used: every run passes --jaeger-url, which must override it.
JAEGER = '{type: jaeger, url: "http://jaeger.invalid:16686", timeout: 2s, retries: 1}'

SLOWER = ("slower", "GET reviews:9080/* -> ratings")
NEW_CALL = ("new_call", "GET reviews:9080/* -> mysql")
ERRORS = ("errors", "GET productpage:9080/productpage -> reviews")


@pytest.fixture(scope="module")
def window(prometheus_launcher: PrometheusLauncher) -> Iterator[tuple[float, RunningPrometheus]]:
    """A healthy window in Prometheus: both subsets at 1% errors; the metrics alone pass it."""
    start = window_start()
    rng = np.random.default_rng(4)
    truth = {("reviews", s): [poisson_counts(rng, 0.01) for _ in range(INTERVALS)] for s in ("v1", "v2")}
    pods = [Pod("reviews-v1-a", "v1", born=-1), Pod("reviews-v2-a", "v2")]
    yield start, backfill(prometheus_launcher, start, truth, pods)


def traces_of(scenario: str | dict[str, Any], start: float, seed: int = 8) -> list[Span]:
    """The window's sampled traces as the simulator makes them (every request sampled)."""
    data = {"preset": scenario} if isinstance(scenario, str) else scenario
    ts = trace_scenario({**data, "samplingRate": 1.0})
    rng = np.random.default_rng(seed)
    t0 = datetime.fromtimestamp(start, UTC)
    out: list[Span] = []
    for k in range(INTERVALS):
        lo = t0 + timedelta(seconds=k * INTERVAL)
        out += generate_spans(rng, ts, lo, lo + timedelta(seconds=INTERVAL), TRACES_PER_MINUTE,
                              canary_subset="v2", t0=t0)
    return out


@pytest.fixture
def jaeger(request: pytest.FixtureRequest, window: tuple[float, RunningPrometheus]) -> Iterator[FakeJaeger]:
    scenario = getattr(request, "param", "trace-healthy")
    truth = traces_of(scenario, window[0])
    # Jaeger knows nothing of subsets: the client finds them from the spans' tags.
    with serve_jaeger(FakeJaeger(spans=[replace(s, subset=None) for s in truth], version="v2.19")) as fake:
        fake.truth = truth  # type: ignore[attr-defined]
        yield fake


def spec_file(tmp_path: Path, *, metrics: str = ERRORS_ONLY, traces: str = JAEGER) -> Path:
    path = tmp_path / "reviews.yaml"
    path.write_text(judge_spec(metrics, PROMETHEUS, traces))
    return path


def judge(capsys: pytest.CaptureFixture[str], spec: Path, start: float, prom: RunningPrometheus,
          *extra: str) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main(["judge", str(spec), "--start", f"{start:.0f}", "--end", f"{start + INTERVALS * INTERVAL:.0f}",
               "--prometheus-url", prom.url, *extra])
    out, err = capsys.readouterr()
    return rc, out, err


def anchored_traces(truth: list[Span], subset: str, start: float, end: float) -> int:
    """Traces of one subset whose target span starts in [start, end): what the analysis should count."""
    first: dict[str, int] = {}
    for s in truth:
        if s.subset == subset:
            first[s.trace_id] = min(first.get(s.trace_id, s.start_us), s.start_us)
    return sum(start * 1e6 <= t < end * 1e6 for t in first.values())


def kinds(data: dict[str, Any]) -> set[tuple[str, str]]:
    return {(f["kind"], f["operation"]) for f in data["traces"]["findings"]}


@pytest.mark.prometheus
@pytest.mark.parametrize(
    ("jaeger", "expected"),
    [("trace-slow-operation", SLOWER), ("trace-new-call", NEW_CALL),
     ({"preset": "trace-error-spans", "regressions": [{"kind": "errors", "service": "reviews", "rate": 0.3}]},
      ERRORS)],
    indirect=["jaeger"], ids=["slower", "new_call", "errors"],
)
def test_a_canary_regression_in_traces_is_a_finding_in_the_json(window, jaeger, expected, tmp_path, capsys):
    start, prom = window
    rc, out, err = judge(capsys, spec_file(tmp_path), start, prom, "--jaeger-url", jaeger.url, "--json")
    data = json.loads(out)
    assert rc == 0 and data["verdict"] == "pass", err  # traces explain; the metrics alone decide here
    decided = datetime.fromisoformat(data["decided_at"]).timestamp()
    traces = data["traces"]
    # Exactly the traces of the intervals up to the decision, as the engine would have fetched them per tick.
    assert traces["canary_traces"] == anchored_traces(jaeger.truth, "v2", start, decided)
    assert traces["baseline_traces"] == anchored_traces(jaeger.truth, "v1", start, decided)
    assert expected in kinds(data), traces["findings"]
    (finding,) = [f for f in traces["findings"] if (f["kind"], f["operation"]) == expected]
    assert set(finding) >= {"kind", "operation", "effect", "ci", "reason"} and finding["reason"]
    if expected == SLOWER:
        assert finding["effect"] == pytest.approx(1.6, rel=0.15)  # the simulator's 1.6x on ratings
        assert 1.0 < finding["ci"][0] < finding["effect"] < finding["ci"][1]
        assert finding["reason"].startswith("GET reviews:9080/* -> ratings: canary +")
    elif expected == NEW_CALL:
        assert finding["effect"] == pytest.approx(0.3, abs=0.12)  # share of canary traces calling mysql
        assert finding["reason"].startswith("new downstream call in canary: mysql (")
    else:
        # 30% of canary spans fail vs ~0.2%: a large or infinite ratio (null in JSON), well above 1.
        assert (finding["effect"] is None or finding["effect"] > 10) and finding["ci"][0] > 5, finding
        assert "errors 3" in finding["reason"] or "errors 2" in finding["reason"], finding["reason"]
    # Only the injected change and its consequences: no error finding unless errors were injected.
    assert {k for k, _ in kinds(data)} <= {expected[0], "slower"}


@pytest.mark.prometheus
def test_a_healthy_canary_has_no_findings_and_the_override_adds_jaeger(window, jaeger, tmp_path, capsys):
    start, prom = window
    # The spec has no trace source: --jaeger-url alone turns Jaeger on.
    spec = spec_file(tmp_path, traces="{type: none}")
    rc, out, err = judge(capsys, spec, start, prom, "--jaeger-url", jaeger.url, "--json")
    assert rc == 0, err
    data = json.loads(out)
    assert data["traces"]["findings"] == []
    assert data["traces"]["canary_traces"] >= 3 * TRACES_PER_MINUTE["v2"] * 0.9
    # Without --jaeger-url the same spec gives no traces object at all.
    rc, out, _ = judge(capsys, spec, start, prom, "--json")
    assert rc == 0 and "traces" not in json.loads(out)


@pytest.mark.prometheus
@pytest.mark.parametrize("jaeger", ["trace-slow-operation"], indirect=True)
def test_the_text_output_lists_the_findings(window, jaeger, tmp_path, capsys):
    start, prom = window
    rc, out, err = judge(capsys, spec_file(tmp_path), start, prom, "--jaeger-url", jaeger.url)
    assert rc == 0, err
    lines = out.splitlines()
    head = next(line for line in lines if line.startswith("traces: "))
    assert " canary vs " in head and "finding" in head
    assert any(line.startswith("  [slower] GET reviews:9080/* -> ratings: canary +") for line in lines), out


@pytest.mark.prometheus
@pytest.mark.parametrize(
    "jaeger",
    [{"preset": "trace-slow-operation", "regressions": [{"kind": "slow", "service": "ratings", "factor": 3}]}],
    indirect=True,
)
def test_a_gating_trace_metric_fails_the_window(window, jaeger, tmp_path, capsys):
    start, prom = window
    metrics = "[{type: error-rate}, {type: traces, gate: true, edges: [9]}]"
    rc, out, err = judge(capsys, spec_file(tmp_path, metrics=metrics), start, prom, "--jaeger-url", jaeger.url,
                         "--json")
    data = json.loads(out)
    assert rc == 1 and data["verdict"] == "fail", (err, data["reason"])
    by_name = {m["name"]: m for m in data["metrics"]}
    assert by_name["traces"]["verdict"] == "fail" and by_name["traces"]["gate"] is True
    assert by_name["errors"]["verdict"] != "fail"  # the error rate is healthy: the traces decided
    assert SLOWER in kinds(data)


def _no_jaeger(capsys, spec, start, prom) -> dict[str, Any]:
    rc, out, err = judge(capsys, spec, start, prom, "--json")
    assert rc == 0, err
    return json.loads(out)


@pytest.mark.prometheus
@pytest.mark.parametrize("failure", ["down", "http-500", "garbage"])
def test_jaeger_that_cannot_be_asked_is_unavailable_and_the_verdict_unchanged(window, tmp_path, capsys, failure):
    start, prom = window
    reference = _no_jaeger(capsys, spec_file(tmp_path, traces="{type: none}"), start, prom)
    with serve_jaeger(FakeJaeger(spans=traces_of("trace-slow-operation", start))) as fake:
        url = fake.url
        if failure == "http-500":
            fake.fail_next(500, times=1000)
        elif failure == "garbage":
            fake.fail_next(200, "<html>not jaeger</html>", times=1000)
        if failure != "down":
            rc, out, err = judge(capsys, spec_file(tmp_path), start, prom, "--jaeger-url", url, "--json")
    if failure == "down":  # the server is gone: connection refused
        rc, out, err = judge(capsys, spec_file(tmp_path), start, prom, "--jaeger-url", url, "--json")
    assert rc == 0, err
    data = json.loads(out)
    assert set(data["traces"]) == {"unavailable"}
    why = data["traces"]["unavailable"]
    assert why.startswith("jaeger: ") and {"down": "cannot connect", "http-500": "HTTP 500",
                                            "garbage": "neither /api/v3 nor /api/traces"}[failure] in why
    # Judged on the metrics alone: the same verdict, decision time and evidence as without Jaeger.
    for key in ("verdict", "reason", "decided_at", "metrics", "data_quality"):
        assert data[key] == reference[key], key


@pytest.mark.prometheus
def test_garbage_search_replies_are_unavailable_too(window, tmp_path, capsys):
    start, prom = window
    with serve_jaeger(FakeJaeger(spans=traces_of("trace-healthy", start))) as fake:
        fake.fail_next(200, '{"result": {"resourceSpans": [', times=1000, path_prefix="/api/v3/traces")
        rc, out, err = judge(capsys, spec_file(tmp_path), start, prom, "--jaeger-url", fake.url)
    assert rc == 0, err
    assert "traces: unavailable (jaeger: /api/v3/traces replied with malformed JSON" in out
    assert "judged on the metrics alone" in out


def test_a_bad_jaeger_url_exits_2_naming_the_option(tmp_path, capsys):
    rc = main(["judge", str(spec_file(tmp_path)), "--start", "0", "--end", "600", "--prometheus-url",
               "http://127.0.0.1:1", "--jaeger-url", "jaeger:16686"])
    assert rc == 2
    assert "--jaeger-url: 'jaeger:16686' is not an http(s) URL" in capsys.readouterr().err
