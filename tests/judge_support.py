"""Shared pieces of the `canary-analyzer judge` tests: the reviews spec they judge, a backfilled observation window
and a stub Prometheus that answers the reachability probe."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

import numpy as np

from analyzer.model import SubsetCounts
from analyzer.sim.exposition import Layout, Pod, build_plan, openmetrics

if TYPE_CHECKING:
    from tests.servers_prometheus import PrometheusLauncher, RunningPrometheus

INTERVAL = 60  # seconds: the spec's `interval: 1m`
RPM = 5000  # requests per subset per interval

# The URL is never used: every run passes --prometheus-url, which must override it.
PROMETHEUS = '{type: prometheus, url: "http://prometheus.invalid:9090", scrapeInterval: 15s, timeout: 2s, retries: 1}'


def judge_spec(metrics: str, metrics_source: str, traces_source: str | None = None) -> str:
    """The reviews spec with one 50% step; `metrics` is the `analysis.metrics` list and the sources are mappings,
    all in flow YAML."""
    traces = f"  traces: {traces_source}\n" if traces_source else ""
    return f"""\
metadata: {{name: reviews}}
target:
  namespace: bookinfo
  virtualService: reviews
  host: reviews.bookinfo.svc.cluster.local
  baseline: {{subset: v1}}
  canary: {{subset: v2}}
strategy: {{steps: [50]}}
timing: {{interval: 1m, minDwell: 3}}
analysis:
  metrics: {metrics}
sources:
  metrics: {metrics_source}
{traces}"""


def window_start() -> float:
    """The first second of a backfilled window: three hours ago, on a minute boundary."""
    return float(int(time.time()) // 60 * 60 - 3 * 3600)


def poisson_counts(rng: np.random.Generator, error_rate: float) -> SubsetCounts:
    """One interval of one subset: Poisson(RPM) requests, each an error with `error_rate`."""
    n = int(rng.poisson(RPM))
    return SubsetCounts(n, int(rng.binomial(n, error_rate)))


def backfill(launcher: PrometheusLauncher, start: float, truth: dict[tuple[str, str], list[SubsetCounts]],
             pods: list[Pod]) -> RunningPrometheus:
    """A Prometheus holding `truth` as the pods' counters, scraped 4 times an interval from `start`."""
    plan = build_plan(truth, pods, Layout(start=start, interval=INTERVAL, samples_per_interval=4, seed=5),
                      (250.0, 500.0))
    return launcher.backfilled(openmetrics(plan))


PROBE_ANSWER = b'{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"1"]}]}}'
NO_SERIES = b'{"status":"success","data":{"resultType":"matrix","result":[]}}'


class StubPrometheus:
    """Answers the judge's reachability probe (`vector(1)`) as Prometheus does and every query for data with
    `status` and `body`."""

    def __init__(self, status: int, body: bytes) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                probe = "query=vector%281%29" in self.path
                answer = PROBE_ANSWER if probe else body
                self.send_response(200 if probe else status)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
