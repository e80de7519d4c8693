"""Synthetic load: the HTTP generator against a local server, its safety checks, the simulator and `plan`."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from analyzer.app import wiring
from analyzer.config import Load, SpecError, load_spec
from analyzer.engine import Engine
from analyzer.load.generator import HttpLoadGenerator
from analyzer.model import Command, Phase
from analyzer.sim.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[1]
SPEC = load_spec(ROOT / "config" / "examples" / "reviews.yaml")


class Server:
    def __init__(self) -> None:
        self.times: list[float] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            disable_nagle_algorithm = True
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                outer.times.append(time.monotonic())
                self.send_response(503 if self.path == "/fail" else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server()
    yield s
    s.close()


def test_the_generator_holds_its_rate_over_30_seconds_and_stops_on_pause(server: Server) -> None:
    rps = 40.0
    gen = HttpLoadGenerator(Load(rps=rps, concurrency=8), f"http://127.0.0.1:{server.port}/")
    try:
        gen.set_active(True)
        time.sleep(30)
        gen.set_active(False)
        stopped = time.monotonic()
        stats = gen.stats()
        time.sleep(0.5)
        assert abs(stats.achieved_rps - rps) <= 0.05 * rps, stats
        assert stats.client_errors == 0 and stats.sent >= stats.completed >= 0.95 * rps * 30
        assert not [t for t in server.times if t > stopped + 0.2], "requests after the load was paused"
        t0 = server.times[0]
        per_5s = [sum(1 for t in server.times if s <= t - t0 < s + 5) for s in range(25)]
        assert max(per_5s) <= 5 * rps + 2  # never above the configured rate, but for a slot of jitter at each end
    finally:
        gen.close()


def test_client_errors_are_counted(server: Server) -> None:
    gen = HttpLoadGenerator(Load(rps=50), f"http://127.0.0.1:{server.port}/fail")
    try:
        gen.set_active(True)
        time.sleep(1.0)
        gen.set_active(False)
        s = gen.stats()
        assert s.completed > 20 and s.client_error_rate == 1.0
    finally:
        gen.close()


def _with_load(**load: object):
    return SPEC.model_copy(update={"load": Load.model_validate(load)})


def test_load_may_only_target_the_rollouts_own_host() -> None:
    settings = wiring.Settings()
    own = wiring.load_generator(_with_load(rps=5), settings)
    assert own is not None and own.url == "http://reviews.bookinfo.svc.cluster.local/"  # type: ignore[attr-defined]
    own.close()  # type: ignore[attr-defined]
    for url in ("http://reviews.bookinfo:9080/r", "https://reviews/"):
        ok = wiring.load_generator(_with_load(rps=5, url=url), settings)
        assert ok is not None
        ok.close()  # type: ignore[attr-defined]
    with pytest.raises(SpecError, match=r"load.url: host 'evil.example' is not the rollout's host 'reviews'"):
        wiring.load_generator(_with_load(rps=5, url="http://evil.example/"), settings)
    with pytest.raises(SpecError, match=r"load.url: host '127.0.0.1'"):
        wiring.load_generator(_with_load(rps=5, url="http://127.0.0.1:9/"), settings)
    allowed = wiring.load_generator(_with_load(rps=5, url="http://127.0.0.1:9/"),
                                    wiring.Settings(allowed_load_hosts=("127.0.0.1",)))
    assert allowed is not None
    allowed.close()  # type: ignore[attr-defined]
    with pytest.raises(SpecError, match=r"load.rps: 500 is above this service's limit of 100 rps"):
        wiring.load_generator(_with_load(rps=500), settings)


def test_simulated_load_runs_only_while_analysing() -> None:
    spec = _with_load(rps=20)
    rig = wiring.simulated(spec, load_scenario("low-traffic"), seed=1)
    engine = Engine(spec, "r", rig.adapters, seed=1)
    engine.start()
    assert rig.mesh.extra_rps == 0  # Initializing: no analysis yet
    rig.clock.advance(60)
    engine.tick()
    assert engine.state.phase is Phase.HEADER_TESTING and rig.mesh.extra_rps == 20
    rig.clock.advance(60)
    engine.tick(Command.PAUSE)
    assert engine.state.phase is Phase.PAUSED and rig.mesh.extra_rps == 0
    engine.tick(Command.RESUME)
    assert rig.mesh.extra_rps == 20
    engine.tick(Command.ABORT)
    assert rig.mesh.extra_rps == 0


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "analyzer.app.cli", *args], capture_output=True, text=True,
                          timeout=300, cwd=ROOT)


def test_load_lets_a_low_traffic_rollout_decide(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'h.db'}"
    without = _cli("demo", "--scenario", "low-traffic", "--json", "--db", db)
    with_load = _cli("demo", "--scenario", "low-traffic", "--load", "20", "--json", "--db", db)
    assert without.returncode == 0 and with_load.returncode == 0, without.stderr + with_load.stderr
    assert json.loads(without.stdout)["outcome"] == "inconclusive"
    result = json.loads(with_load.stdout)
    assert result["outcome"] == "promoted" and result["load"]["target_rps"] == 20
    assert abs(result["load"]["achieved_rps"] - 20) < 1


def test_plan_says_how_much_load_to_add() -> None:
    low = _cli("plan", str(ROOT / "config" / "examples" / "reviews.yaml"), "--rps", "5", "--budget", "30m", "--json")
    high = _cli("plan", str(ROOT / "config" / "examples" / "reviews.yaml"), "--rps", "500", "--json")
    assert low.returncode == 0 and high.returncode == 0, low.stderr + high.stderr
    advice = json.loads(low.stdout)["load"]
    assert advice["add_rps"] > 5 and advice["power"] == 0.9
    assert json.loads(high.stdout)["load"]["add_rps"] == 0
    bad = _cli("plan", str(ROOT / "config" / "examples" / "reviews.yaml"), "--budget", "soon")
    assert bad.returncode == 2 and "--budget: 'soon'" in bad.stderr and "Traceback" not in bad.stderr
