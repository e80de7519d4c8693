"""`canary-analyzer judge` end to end: a real Prometheus backfilled with known counts; exit codes and output."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

from analyzer.app.cli import main
from analyzer.app.cli.judge import connect_error, judge_command, parse_time
from analyzer.config import PrometheusSource, SpecError, load_spec
from analyzer.model import SubsetCounts
from analyzer.sim.exposition import Pod
from tests.judge_support import (
    INTERVAL,
    PROMETHEUS,
    StubPrometheus,
    backfill,
    judge_spec,
    poisson_counts,
    window_start,
)

if TYPE_CHECKING:
    from tests.servers_prometheus import PrometheusLauncher, RunningPrometheus

pytest_plugins = ["tests.servers_prometheus"]

HEALTHY, REGRESSED = 12, 12  # intervals: a healthy canary, then the same canary with 5x the errors
BASE_ERROR, BAD_ERROR = 0.01, 0.05
# The backfilled counts are binomial by construction; 12 minutes would not show that to the noise bound.
METRICS = "[{type: error-rate, intervalNoise: 0}]"



def ground_truth(seed: int = 3) -> dict[tuple[str, str], list[SubsetCounts]]:
    rng = np.random.default_rng(seed)
    return {
        ("reviews", "v1"): [poisson_counts(rng, BASE_ERROR) for _ in range(HEALTHY + REGRESSED)],
        ("reviews", "v2"): [poisson_counts(rng, BASE_ERROR if k < HEALTHY else BAD_ERROR)
                            for k in range(HEALTHY + REGRESSED)],
    }


@pytest.fixture(scope="module")
def backfilled(prometheus_launcher: PrometheusLauncher) -> Iterator[tuple[float, dict, RunningPrometheus]]:
    start = window_start()
    truth = ground_truth()
    pods = [Pod("reviews-v1-a", "v1", born=-1), Pod("reviews-v1-b", "v1", born=-1, restart=4),
            Pod("reviews-v2-a", "v2"), Pod("reviews-v2-b", "v2", restart=HEALTHY + 1)]
    # No latency truth: the spec gates on errors only (the pods with history still export histograms).
    yield start, truth, backfill(prometheus_launcher, start, truth, pods)


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    path = tmp_path / "reviews.yaml"
    path.write_text(judge_spec(METRICS, PROMETHEUS))
    return path


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def judge(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main(["judge", *args])
    out, err = capsys.readouterr()
    return rc, out, err


def total(counts: list[SubsetCounts]) -> SubsetCounts:
    out = SubsetCounts(0, 0)
    for c in counts:
        out = out + c
    return out


@pytest.mark.prometheus
def test_healthy_window_passes_with_exit_0_and_exact_counts(backfilled, spec_file, capsys):
    start, truth, prom = backfilled
    end = start + HEALTHY * INTERVAL
    # One bound as RFC 3339, the other as unix seconds: both are accepted.
    rc, out, err = judge(capsys, str(spec_file), "--start", rfc3339(start), "--end", f"{end:.0f}",
                         "--prometheus-url", prom.url, "--json")
    assert rc == 0, err
    data = json.loads(out)
    assert data["verdict"] == "pass", data["reason"]
    decided = datetime.fromisoformat(data["decided_at"]).timestamp()
    k = round((decided - start) / INTERVAL)
    assert 3 <= k <= HEALTHY  # not before minDwell intervals with data
    errors = next(m for m in data["metrics"] if m["name"] == "errors")
    assert errors["verdict"] == "pass" and errors["ratio"] is not None and errors["e_value"] < errors["threshold"]
    # The evidence was built from exactly the ground-truth counts of the intervals up to the decision.
    canary, baseline = total(truth[("reviews", "v2")][:k]), total(truth[("reviews", "v1")][:k])
    assert errors["canary"] == {"requests": canary.requests, "events": canary.errors}
    assert errors["baseline"] == {"requests": baseline.requests, "events": baseline.errors}
    low, high = errors["ci"]
    assert low < 1 < high
    dq = data["data_quality"]
    assert (dq["intervals"], dq["intervals_with_data"], dq["gaps"], dq["stale_series"]) == (k, k, [], [])


@pytest.mark.prometheus
def test_regressed_window_fails_with_exit_1_and_its_decision_time(backfilled, spec_file, capsys):
    start, _, prom = backfilled
    t0 = start + HEALTHY * INTERVAL
    rc, out, err = judge(capsys, str(spec_file), "--start", f"{t0:.0f}", "--end", f"{t0 + REGRESSED * INTERVAL:.0f}",
                         "--prometheus-url", prom.url, "--json")
    assert rc == 1, err
    data = json.loads(out)
    assert data["verdict"] == "fail"
    assert data["decided_at"] is not None
    assert datetime.fromisoformat(data["decided_at"]).timestamp() <= t0 + 3 * INTERVAL
    errors = next(m for m in data["metrics"] if m["name"] == "errors")
    assert errors["verdict"] == "fail" and errors["e_value"] >= errors["threshold"]
    assert errors["ci"][0] > 2  # the confidence sequence excludes anything below a doubling


@pytest.mark.prometheus
def test_human_summary_names_the_verdict_and_the_failing_metric(backfilled, spec_file, capsys):
    start, _, prom = backfilled
    t0 = start + HEALTHY * INTERVAL
    rc, out, _ = judge(capsys, str(spec_file), "--start", f"{t0:.0f}", "--end", f"{t0 + 5 * INTERVAL:.0f}",
                       "--prometheus-url", prom.url)
    assert rc == 1
    lines = out.splitlines()
    assert lines[0] == "reviews: FAIL (exit 1)"
    assert any(line.startswith("  [fail] errors: canary ") and "regression" in line for line in lines)
    assert any(line.startswith("data: 1/1 intervals with data; gaps: none") for line in lines)


@pytest.mark.prometheus
def test_window_without_data_is_inconclusive_with_exit_3(backfilled, spec_file, capsys):
    start, _, prom = backfilled
    t0 = start - 2 * 3600  # Prometheus answers, but holds no sample this early
    rc, out, _ = judge(capsys, str(spec_file), "--start", f"{t0:.0f}", "--end", f"{t0 + 4 * INTERVAL:.0f}",
                       "--prometheus-url", prom.url, "--json")
    assert rc == 3
    data = json.loads(out)
    assert data["verdict"] == "inconclusive" and data["decided_at"] is None
    assert [g["why"] for g in data["data_quality"]["gaps"]] == ["no data for baseline and canary"] * 4


@pytest.mark.prometheus
@pytest.mark.parametrize(("weight", "verdict"), [(50, "pass"), (10, "inconclusive")])
def test_canary_weight_turns_on_the_sample_ratio_check(backfilled, spec_file, capsys, weight, verdict):
    """The window's split is 50/50: a configured 10% is a sample-ratio mismatch, and the gate will not pass."""
    start, _, prom = backfilled
    capsys.readouterr()
    rc = judge_command(load_spec(spec_file), f"{start:.0f}", f"{start + HEALTHY * INTERVAL:.0f}",
                       prometheus_url=prom.url, as_json=True, canary_weight=weight)
    data = json.loads(capsys.readouterr().out)
    assert (rc, data["verdict"]) == ({"pass": 0, "inconclusive": 3}[verdict], verdict)
    dq = data["data_quality"]
    assert dq["srm_checked"] is True
    if verdict == "pass":
        assert dq["srm"] is None
    else:
        assert "sample-ratio mismatch" in dq["srm"] and data["reason"].startswith("comparison invalid")


def test_canary_weight_must_be_a_partial_weight(spec_file):
    with pytest.raises(SpecError, match="--canary-weight: 100 is not between 0 and 100"):
        judge_command(load_spec(spec_file), "1767225600", "1767229200", prometheus_url=None, as_json=True,
                      canary_weight=100)


# ---- errors: exit 2, one message, no traceback ----


def closed_port() -> int:
    with socket.socket() as s:  # bound, then closed: connections to it are refused
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Behind an HTTP proxy the connect check is skipped (only the proxy connects): test without one."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


def test_unreachable_prometheus_exits_2_with_one_message(spec_file, no_proxy):
    url = f"http://127.0.0.1:{closed_port()}"
    done = subprocess.run(
        [sys.executable, "-m", "analyzer.app.cli", "judge", str(spec_file), "--start", "1767225600",
         "--end", "1767229200", "--prometheus-url", url, "--json"],
        capture_output=True, text=True, timeout=60, env=dict(os.environ),
    )
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        f"error: judge: cannot connect to Prometheus at {url}: Connection refused (2 attempts)"
    ]


def test_connect_error_retries_and_names_the_cause(no_proxy):
    sleeps: list[float] = []
    closed = PrometheusSource(url=f"http://127.0.0.1:{closed_port()}", retries=2)
    assert "Connection refused (3 attempts)" in (connect_error(closed, sleep=sleeps.append) or "")
    assert sleeps == [0.5, 1.0]
    unknown = PrometheusSource(url="http://prometheus.invalid:9090", retries=0)
    assert "unknown host 'prometheus.invalid'" in (connect_error(unknown) or "")


def test_window_where_no_interval_could_be_read_exits_2(spec_file, capsys):
    server = StubPrometheus(503, b"overloaded")  # the probe passes, every query for data fails
    try:
        rc, out, err = judge(capsys, str(spec_file), "--start", "1767225600", "--end", "1767225780",
                             "--prometheus-url", server.url, "--json")
    finally:
        server.stop()
    assert rc == 2 and out == ""
    assert "error: judge: no interval of the window could be read" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--start", "yesterday", "--end", "1767229200"],
         "error: --start: 'yesterday' is not RFC 3339 (e.g. 2026-01-01T12:00:00Z) or unix seconds"),
        (["--start", "1767225600", "--end", "2026-01-01T01:00:00"], "error: --end: '2026-01-01T01:00:00' is not RFC"),
        (["--start", "1767229200", "--end", "2026-01-01T00:00:00Z"], "is not after --start '1767229200'"),
        (["--start", "1767225600", "--end", "1767225630"], "shorter than one interval (timing.interval 60s)"),
        (["--start", "1767225600", "--end", "1767229200", "--prometheus-url", "prometheus:9090"],
         "error: --prometheus-url: 'prometheus:9090' is not an http(s) URL"),
    ],
)
def test_bad_options_exit_2_with_a_message_naming_them(spec_file, capsys, args, message):
    rc, out, err = judge(capsys, str(spec_file), *args, "--json")
    assert rc == 2 and out == ""
    assert message in err and "Traceback" not in err


def test_a_simulated_source_needs_a_prometheus_url(spec_file, capsys):
    spec_file.write_text(judge_spec(METRICS, "{type: simulated}"))
    rc, _, err = judge(capsys, str(spec_file), "--start", "1767225600", "--end", "1767229200")
    assert rc == 2
    assert "sources.metrics.type: 'simulated' cannot be replayed" in err


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-01T00:00:00Z", 1767225600.0),
        ("2026-01-01t02:00:00.5+02:00", 1767225600.5),
        ("2026-01-01 00:00:00z", 1767225600.0),
        ("1767225600", 1767225600.0),
        (" 1767225600.25 ", 1767225600.25),
    ],
)
def test_parse_time_accepts_rfc3339_and_unix_seconds(text, expected):
    moment = parse_time(text, "--start")
    assert moment.tzinfo is not None and moment.timestamp() == expected


@pytest.mark.parametrize("text", ["", "yesterday", "-5", "1e9", "nan", "2026-01-01", "2026-13-01T00:00:00Z"])
def test_parse_time_rejects_anything_else(text):
    with pytest.raises(SpecError, match="--start: "):
        parse_time(text, "--start")
