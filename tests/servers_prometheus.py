"""Real Prometheus servers for tests: backfilled with promtool, or scraping a live /metrics endpoint.

Use from a test module with `pytest_plugins = ["tests.servers_prometheus"]`. With CI=true a missing
binary fails the test (tests.conftest.require_or_skip); as root the Debian package is installed.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from analyzer.sim.metrics_server import MetricsServer
from tests.conftest import require_or_skip

READY_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Binaries:
    prometheus: str
    promtool: str


def _which() -> Binaries | None:
    prometheus, promtool = shutil.which("prometheus"), shutil.which("promtool")
    return Binaries(prometheus, promtool) if prometheus and promtool else None


def _apt_install() -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = ["apt-get", "install", "-y", "--no-install-recommends", "prometheus"]
    if subprocess.run(cmd, env=env, capture_output=True, timeout=600).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, timeout=600)
        subprocess.run(cmd, env=env, capture_output=True, timeout=600)


def ensure_binaries() -> Binaries | None:
    if _which() is None and hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        _apt_install()
    return _which()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RunningPrometheus:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    data_dir: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)

    def log_tail(self, n: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])

    def query(self, promql: str) -> list[dict]:
        reply = requests.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=5)
        reply.raise_for_status()
        return reply.json()["data"]["result"]


@dataclass
class PrometheusLauncher:
    """Starts Prometheus processes on loopback and stops every one of them at teardown."""

    binaries: Binaries
    workdir: Path
    running: list[RunningPrometheus] = field(default_factory=list)

    def start(self, config_yaml: str, data_dir: Path | None = None) -> RunningPrometheus:
        n = len(self.running)
        data_dir = data_dir or self.workdir / f"data-{n}"
        data_dir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / f"prometheus-{n}.yml"
        config.write_text(config_yaml)
        port = free_port()
        log_path = self.workdir / f"prometheus-{n}.log"
        cmd = [
            self.binaries.prometheus,
            f"--config.file={config}",
            f"--storage.tsdb.path={data_dir}",
            f"--web.listen-address=127.0.0.1:{port}",
            # Backfilled blocks lie hours in the past; a long retention keeps them loaded.
            "--storage.tsdb.retention.time=3650d",
        ]
        with log_path.open("wb") as log:
            process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        server = RunningPrometheus(f"http://127.0.0.1:{port}", process, log_path, data_dir)
        self.running.append(server)
        self._wait_ready(server)
        return server

    @staticmethod
    def _wait_ready(server: RunningPrometheus) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                pytest.fail(f"prometheus exited with {server.process.returncode}:\n{server.log_tail()}")
            try:
                if requests.get(f"{server.url}/-/ready", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        server.stop()
        pytest.fail(f"prometheus not ready within {READY_TIMEOUT_S}s:\n{server.log_tail()}")

    def backfilled(self, openmetrics_text: str) -> RunningPrometheus:
        """A Prometheus whose TSDB holds exactly these samples (promtool create-blocks-from openmetrics)."""
        n = len(self.running)
        source = self.workdir / f"backfill-{n}.om"
        source.write_text(openmetrics_text)
        data_dir = self.workdir / f"data-{n}"
        data_dir.mkdir(parents=True, exist_ok=True)
        cmd = [self.binaries.promtool, "tsdb", "create-blocks-from", "openmetrics", str(source), str(data_dir)]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            pytest.fail(f"promtool failed ({done.returncode}): {done.stderr[-2000:]}{done.stdout[-1000:]}")
        return self.start("global:\n  scrape_interval: 15s\n", data_dir)

    def live(self, target: str, scrape_interval: str = "1s") -> RunningPrometheus:
        """A Prometheus scraping `target` (host:port serving /metrics)."""
        config = (
            f"global:\n  scrape_interval: {scrape_interval}\n  evaluation_interval: {scrape_interval}\n"
            "scrape_configs:\n"
            f"  - job_name: sim\n    scrape_interval: {scrape_interval}\n"
            f"    static_configs:\n      - targets: ['{target}']\n"
        )
        return self.start(config)

    def stop_all(self) -> None:
        for server in self.running:
            server.stop()


@pytest.fixture(scope="session")
def prometheus_binaries() -> Binaries:
    found = ensure_binaries()
    require_or_skip(found is not None, "prometheus/promtool are not installed (apt-get install prometheus)")
    assert found is not None
    return found


@pytest.fixture(scope="module")
def prometheus_launcher(prometheus_binaries: Binaries, tmp_path_factory: pytest.TempPathFactory) -> Iterator[
    PrometheusLauncher
]:
    launcher = PrometheusLauncher(prometheus_binaries, tmp_path_factory.mktemp("prometheus"))
    yield launcher
    launcher.stop_all()


@pytest.fixture(scope="module")
def metrics_server() -> Iterator[MetricsServer]:
    """Serves an empty exposition until a test calls `set_render`."""
    with MetricsServer(lambda: "") as server:
        yield server


@pytest.fixture(scope="module")
def live_prometheus(prometheus_launcher: PrometheusLauncher, metrics_server: MetricsServer) -> RunningPrometheus:
    """Prometheus scraping `metrics_server` every second; returns once the first scrape succeeded."""
    server = prometheus_launcher.live(f"127.0.0.1:{metrics_server.port}")
    wait_for(lambda: bool(server.query('up{job="sim"} == 1')), 30.0, "first scrape of the metrics server")
    return server


def wait_for(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout_s}s waiting for {what}")
