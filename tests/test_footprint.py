"""Issue 10: the daemon's memory. `serve` loads no library its ticks do not use, and keeps no unbounded history."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import yaml

from analyzer.config import parse_spec
from analyzer.model import MAX_BRIDGE
from analyzer.sim.clock import EPOCH
from analyzer.sim.mesh import SimulatedMesh
from analyzer.sim.scenario import load_scenario
from analyzer.store import control
from analyzer.store.sql import SqlStore
from analyzer.traffic.memory import MemoryRouter
from benchmarks.daemon import SPEC as BENCH_SPEC
from benchmarks.daemon import _max_tick, create_rollouts
from tests.daemon_support import OPERATE_TOKEN

# Shared objects of the libraries the service must not load: pandas (and pyarrow behind it), scipy.stats.
NOT_LOADED = ("/pandas/", "/pyarrow/", "/scipy/stats/")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads /proc/PID/maps (Linux)")
def test_serve_ticking_simulated_rollouts_maps_no_pandas_pyarrow_or_scipy_stats(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'store.db'}"
    store = SqlStore(db)
    create_rollouts(store, [f"fp-{i}" for i in range(3)])
    (tmp_path / "tokens").write_text(f"operate {OPERATE_TOKEN}\n")
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "analyzer.app.cli", "serve", "--sim", "--sim-speed", "60", "--db", db, "--listen",
         f"127.0.0.1:{port}", "--token-file", str(tmp_path / "tokens"), "--no-leader-election", "--poll", "0.2"],
        stdout=subprocess.DEVNULL, stderr=(tmp_path / "serve.log").open("wb"))
    try:
        deadline = time.monotonic() + 90
        while (found := _max_tick(store))[0] < 3 or found[1] < 3:  # every rollout judged twice: the tick path ran
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "serve.log").read_text()[-2000:]
            time.sleep(0.2)
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        assert "canary_analyzer_tick_errors_total 0.0" in metrics
        maps = Path(f"/proc/{proc.pid}/maps").read_text()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        store.close()
    assert "/scipy/special/" in maps and "/numpy/" in maps  # the check sees the libraries that are loaded
    loaded = sorted({line.split()[-1] for line in maps.splitlines() if any(m in line for m in NOT_LOADED)})
    assert not loaded, loaded


def test_a_mesh_with_retention_answers_every_window_as_with_its_whole_history() -> None:
    """The daemon's meshes keep MAX_BRIDGE and two intervals of history: every window the engine can ask for,
    one interval or reaching back over a gap up to MAX_BRIDGE, is answered bit for bit as with all of it."""
    spec = parse_spec(yaml.safe_load(BENCH_SPEC % {"i": 0}))
    interval = timedelta(seconds=spec.timing.interval)
    meshes = []
    for retain in (None, MAX_BRIDGE + 2 * interval):
        router = MemoryRouter()
        router.set_weights(spec, {"v1": 75, "v2": 25})
        mesh = SimulatedMesh(load_scenario("healthy"), router, seed=3, start=EPOCH, edges=spec.analysis.bucket_edges)
        mesh.retain = retain
        meshes.append(mesh)
    minutes = int(4 * MAX_BRIDGE / interval)
    for k in range(1, minutes):
        end = EPOCH + k * interval
        # Mostly one interval; every 50th tick a window reaching back as far as a bridged gap may.
        back = min(k, int(MAX_BRIDGE / interval)) if k % 50 == 0 else 1
        whole, kept = (m.observe(spec, end - back * interval, end) for m in meshes)
        assert kept == whole
    assert len(meshes[0].history) == minutes - 1
    assert len(meshes[1].history) <= (MAX_BRIDGE + 2 * interval) / interval + 1


def test_rollouts_of_one_template_share_its_parsed_parts(tmp_path: Path) -> None:
    """The daemon's runners hold one copy of a template's analysis, strategy, timing and sources."""
    from analyzer.app.daemon import SharedParts
    from tests.daemon_support import make_env, service

    svc = service(make_env(tmp_path), sim_speed=60)
    texts = [BENCH_SPEC % {"i": i} for i in range(3)]
    for i, text in enumerate(texts):
        control.create_rollout(svc.store, f"tpl-{i}", parse_spec(yaml.safe_load(text)), text,
                               {"owner": "daemon", "mode": "sim", "scenario": "healthy", "seed": i})
    daemon = svc.daemon
    assert daemon is not None
    daemon.start()
    try:
        deadline = time.monotonic() + 30
        while (found := _max_tick(svc.store))[0] < 2 or found[1] < 3:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        specs = [daemon.runners[f"tpl-{i}"].engine.spec for i in range(3)]
    finally:
        daemon.stop()
        svc.store.close()
    assert specs == [parse_spec(yaml.safe_load(t)) for t in texts]  # equal to their own parse
    assert specs[0].analysis is specs[1].analysis is specs[2].analysis
    assert specs[0].target is not specs[1].target and specs[1].name != specs[2].name
    parts = SharedParts(size=2)  # bounded: the least recently used parts go
    first = parts.share(specs[0])
    other = parts.share(specs[0].model_copy(update={"timing": specs[0].timing.model_copy(update={"interval": 30.0})}))
    assert len(parts._parts) == 2 and first.timing is not other.timing
