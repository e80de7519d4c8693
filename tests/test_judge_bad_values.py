"""`canary-analyzer judge` on counter values no Istio counter has (+Inf, NaN, fractions) and on resets.

A real Prometheus is backfilled with one pod per subset scraped every 15 s. Before issue 9 a +Inf or a
fraction crashed `judge` with a traceback. Now the interval holding one is a gap for both subsets,
named in the output; exit 2 (one line) only when no interval at all could be read.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

from analyzer.model import SubsetCounts
from analyzer.sim.exposition import Pod, istio_labels

if TYPE_CHECKING:
    from tests.servers_prometheus import PrometheusLauncher, RunningPrometheus

pytest_plugins = ["tests.servers_prometheus"]

SCRAPE, OFFSET, PER_SLICE = 15, 7, 500  # a scrape every 15 s, 7 s past; ~500 requests per subset per scrape
MINUTES = 10
FIRST = -8  # scrapes before the window: references for the first interval
INF_AT, FRACTION_AT, RESET_AT = 9, 17, 25  # canary scrape indexes: minutes 2, 4 and 6 (4 scrapes a minute)
ROOT = Path(__file__).resolve().parents[1]

SPEC = """\
metadata: {{name: {service}}}
target:
  namespace: bookinfo
  virtualService: {service}
  host: {service}.bookinfo.svc.cluster.local
  baseline: {{subset: v1}}
  canary: {{subset: v2}}
strategy: {{steps: [50]}}
timing: {{interval: 1m, minDwell: 20}}
analysis:
  metrics: [{{type: error-rate}}]
sources:
  metrics: {{type: prometheus, url: "http://prometheus.invalid:9090", scrapeInterval: 15s, timeout: 2s, retries: 0}}
"""


@dataclass
class Service:
    name: str
    truth: dict[str, list[SubsetCounts]]  # per subset, per minute of the window


def series_lines(pod: Pod, code: str, values: list[str], start: float) -> list[str]:
    labels = ",".join(f'{k}="{v}"' for k, v in istio_labels(pod, (code, ""), scrape_labels=True))
    return [f"istio_requests_total{{{labels}}} {v} {start + OFFSET + SCRAPE * j:.3f}"
            for j, v in zip(range(FIRST, 4 * MINUTES), values, strict=True)]


def service(name: str, start: float, rng: np.random.Generator,
            canary_ok: dict[int, str] | None = None, reset: int | None = None) -> tuple[Service, list[str]]:
    """Two subsets with equal 1% errors; `canary_ok` overrides canary 200-counter samples by scrape index."""
    scrapes = range(FIRST, 4 * MINUTES)
    lines: list[str] = []
    truth: dict[str, list[SubsetCounts]] = {}
    for version, history in (("v1", 5000), ("v2", 100)):
        n = rng.poisson(PER_SLICE, len(scrapes))
        e = rng.binomial(n, 0.01)
        ok = np.cumsum(n - e) + history
        err = np.cumsum(e)
        if version == "v2" and reset is not None:  # the pod restarted: its counters start from 0 again
            i = reset - FIRST
            ok[i:] -= ok[i - 1]
            err[i:] -= err[i - 1]
        ok_text = [str(v) for v in ok]
        for j, text in (canary_ok or {}).items() if version == "v2" else ():
            ok_text[j - FIRST] = text
        pod = Pod(f"{name}-{version}-0", version, service=name)
        lines += series_lines(pod, "200", ok_text, start) + series_lines(pod, "503", [str(v) for v in err], start)
        first = -FIRST  # index of scrape 0
        truth[version] = [SubsetCounts(int(n[first + 4 * k: first + 4 * k + 4].sum()),
                                       int(e[first + 4 * k: first + 4 * k + 4].sum())) for k in range(MINUTES)]
    return Service(name, truth), lines


@dataclass
class Backfill:
    prom: RunningPrometheus
    start: float
    services: dict[str, Service]


@pytest.fixture(scope="module")
def backfill(prometheus_launcher: PrometheusLauncher) -> Backfill:
    start = float(int(time.time()) // 3600 * 3600 - 3 * 3600)
    rng = np.random.default_rng(9)
    all_nan = {j: "NaN" for j in range(FIRST, 4 * MINUTES)}
    mixed = {INF_AT: "+Inf", FRACTION_AT: "1234.5"}
    made = [service("allnan", start, rng, all_nan), service("mixed", start, rng, mixed, reset=RESET_AT)]
    lines = [line for _, ls in made for line in ls]
    prom = prometheus_launcher.backfilled("# TYPE istio_requests counter\n" + "\n".join(lines) + "\n# EOF\n")
    return Backfill(prom, start, {s.name: s for s, _ in made})


def judge(backfill: Backfill, name: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """The real command line, in a subprocess, so a traceback would show on stderr."""
    spec = tmp_path / f"{name}.yaml"
    spec.write_text(SPEC.format(service=name))
    end = backfill.start + MINUTES * 60
    cmd = [sys.executable, "-m", "analyzer.app.cli", "judge", str(spec), "--start", f"{backfill.start:.0f}",
           "--end", f"{end:.0f}", "--prometheus-url", backfill.prom.url, "--json"]
    env = {**os.environ, "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT, env=env)


@pytest.mark.prometheus
def test_a_window_of_nothing_but_nan_exits_2_with_one_line(backfill, tmp_path):
    done = judge(backfill, "allnan", tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stdout == "" and "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "no interval of the window could be read" in lines[0] and "NaN" in lines[0]


@pytest.mark.prometheus
def test_inf_and_fraction_are_gaps_for_both_and_a_reset_counts_exactly(backfill, tmp_path):
    done = judge(backfill, "mixed", tmp_path)
    assert "Traceback" not in done.stderr
    assert done.returncode == 3, done.stderr  # minDwell 20 > 10 intervals: inconclusive, after reading them all
    data = json.loads(done.stdout)
    dq = data["data_quality"]
    assert dq["intervals"] == MINUTES
    gaps = dq["gaps"]
    assert [g["start"] for g in gaps] == [datetime.fromtimestamp(backfill.start + 60 * m, UTC).isoformat()
                                          for m in (2, 4)]
    assert len(gaps) == 2 and all(g["kind"] == "unreadable" for g in gaps)
    assert "+Inf" in gaps[0]["why"] and "fractional" in gaps[1]["why"] and 'pod="mixed-v2-0"' in gaps[0]["why"]
    assert dq["intervals_with_data"] == MINUTES - 2
    # The evidence holds exactly the intervals with data, the one with the canary's restart included.
    truth = backfill.services["mixed"].truth
    kept = [k for k in range(MINUTES) if k not in (2, 4)]
    errors = next(m for m in data["metrics"] if m["name"] == "errors")
    for side, version in (("canary", "v2"), ("baseline", "v1")):
        total = SubsetCounts(0, 0)
        for k in kept:
            total = total + truth[version][k]
        assert errors[side] == {"requests": total.requests, "events": total.errors}
