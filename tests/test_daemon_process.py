"""`canary-analyzer serve` as a real process: kill -9 at random points, SIGTERM, and two replicas on one store."""

from __future__ import annotations

import itertools
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from analyzer.app.cli import main
from tests.daemon_support import OPERATE, READ, REVIEWS

pytest_plugins = ["tests.servers_postgres"]

STEPS = [10, 25, 50, 100]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Serve:
    """One `serve` process; stderr (JSON log lines) goes to a file per start."""

    tmp: Path
    db: str
    extra: list[str] = field(default_factory=list)
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    logs: list[Path] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.starts += 1
        log = self.tmp / f"serve-{self.port}-{self.starts}.log"
        self.logs.append(log)
        argv = [sys.executable, "-m", "analyzer.app.cli", "serve", "--db", self.db, "--listen",
                f"127.0.0.1:{self.port}", "--token-file", str(self.tmp / "tokens"), "--specs", str(self.tmp / "specs"),
                "--serve-log-level", "info", *self.extra]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=log.open("wb"), env=env)
        deadline = time.monotonic() + 60
        # One client for the polls: httpx.get builds an SSL context each call (~30 ms of CPU), which the
        # starting process, on a small machine, would wait for.
        with httpx.Client(timeout=1) as client:
            while time.monotonic() < deadline:
                assert self.proc.poll() is None, log.read_text()[-3000:]
                try:
                    if client.get(f"{self.url}/healthz").status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(0.05)
        raise AssertionError("serve did not come up")

    def kill(self, sig: int = signal.SIGKILL) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=60)

    def post(self, path: str, **kw: Any) -> httpx.Response:
        return httpx.post(f"{self.url}{path}", headers={**OPERATE, **kw.pop("headers", {})}, timeout=30, **kw)

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", headers=READ, timeout=90, **kw)

    def log_events(self, name: str) -> list[dict]:
        out = []
        for log in self.logs:
            for line in log.read_text().splitlines():
                if line.startswith("{"):
                    event = json.loads(line)
                    if event.get("event") == name:
                        out.append(event)
        return out


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    specs = tmp_path / "specs"
    specs.mkdir()
    # A long budget: simulated time runs on while the process is down, and must not end the rollout.
    text = REVIEWS.read_text().replace("budget: 60m", "budget: 24h")
    (specs / "reviews.yaml").write_text(text)
    (specs / "ratings.yaml").write_text(text.replace("name: reviews", "name: ratings")
                                        .replace("virtualService: reviews", "virtualService: ratings"))
    from tests.daemon_support import OPERATE_TOKEN, READ_TOKEN

    (tmp_path / "tokens").write_text(f"operate {OPERATE_TOKEN}\nread {READ_TOKEN}\n")
    return tmp_path


@pytest.fixture
def servers() -> Iterator[list[Serve]]:
    started: list[Serve] = []
    yield started
    for s in started:
        if s.proc is not None and s.proc.poll() is None:
            s.kill()


def history(db: str, rollout_id: str, capsys: pytest.CaptureFixture[str]) -> dict:
    capsys.readouterr()
    assert main(["history", "show", rollout_id, "--db", db, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def check_history(shown: dict) -> None:
    """Tick numbers once each; steps never skipped or repeated; every route adds up to 100."""
    timeline = shown["timeline"]
    ticks = [t["tick"] for t in timeline]
    assert ticks == list(range(len(ticks))), ticks
    steps = [t["step"] for t in timeline]
    assert all(b - a in (0, 1) for a, b in itertools.pairwise(steps)), steps
    entered = [w for w in (t["weights"].get("v2") for t in timeline if t["step"] >= 0 and t["phase"] not in
                           ("RollingBack", "RolledBack", "Aborted"))]
    distinct = [w for i, w in enumerate(entered) if i == 0 or w != entered[i - 1]]
    assert distinct == STEPS[: len(distinct)], distinct
    for t in timeline:
        assert not t["weights"] or sum(t["weights"].values()) == 100, t
        for a in t["actions"]:
            if a["action"] == "SetWeights":
                assert sum(a["weights"].values()) == 100, a


def test_kill_9_at_random_points_loses_no_tick_and_skips_no_step(workdir, servers, capsys):
    db = f"sqlite:///{workdir / 'store.db'}"
    # One identity across restarts, as a restarted pod keeps its name: it takes its own lease back at once.
    serve = Serve(workdir, db, ["--sim", "--sim-speed", "120", "--identity", "crash-test", "--lease-ttl", "2",
                                "--poll", "0.1"])
    servers.append(serve)
    serve.start()
    ids = {}
    for spec, scenario in (("reviews", "healthy"), ("ratings", "error-regression")):
        r = serve.post("/v1/rollouts", json={"spec": spec, "scenario": scenario, "seed": 7},
                       headers={"Idempotency-Key": f"crash-{spec}"})
        assert r.status_code == 201, r.text
        ids[scenario] = r.json()["id"]
    rng = random.Random(20)
    kills = 0
    while kills < 20:
        time.sleep(rng.uniform(0.05, 0.9))
        serve.kill()
        kills += 1
        serve.start()
    for rollout_id in ids.values():
        assert serve.get(f"/v1/rollouts/{rollout_id}/wait", params={"timeout": 60}).json()["phase"] != "Progressing"
    assert serve.kill(signal.SIGTERM) == 0
    healthy, bad = (history(db, ids[k], capsys) for k in ("healthy", "error-regression"))
    assert healthy["summary"]["outcome"] == "promoted", healthy["summary"]
    assert bad["summary"]["outcome"] == "rolled_back", bad["summary"]
    check_history(healthy)
    check_history(bad)
    # The kills did land between ticks' intents and results, or in the resume of a restart.
    resumed = serve.log_events("resumed")
    assert len(resumed) >= 5, len(resumed)


def test_sigterm_finishes_the_running_tick_records_it_and_exits_0(workdir, servers, capsys):
    db = f"sqlite:///{workdir / 'store.db'}"
    serve = Serve(workdir, db, ["--sim", "--sim-speed", "300", "--poll", "0.1"])
    servers.append(serve)
    serve.start()
    rollout_id = serve.post("/v1/rollouts", json={"spec": "reviews", "scenario": "healthy"}).json()["id"]
    deadline = time.monotonic() + 30
    while serve.get(f"/v1/rollouts/{rollout_id}").json()["tick"] in (None, 0, 1, 2) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert serve.kill(signal.SIGTERM) == 0
    shown = history(db, rollout_id, capsys)
    logged = [e["tick"] for e in serve.log_events("tick") if e.get("rollout") == rollout_id]
    recorded = [t["tick"] for t in shown["timeline"]]
    assert logged and recorded[1:] == logged  # tick 0 is the start; every tick the process ran is in the store
    assert all(a["ok"] is True for t in shown["timeline"] for a in t["actions"])  # results recorded, not just intents
    assert serve.log_events("daemon_stopped")


@pytest.mark.postgres
def test_two_replicas_on_one_postgres_store_never_tick_the_same_rollout_twice(workdir, servers, postgres_url,
                                                                              capsys):
    common = ["--sim", "--sim-speed", "120", "--lease-ttl", "2", "--poll", "0.1"]
    a = Serve(workdir, postgres_url, [*common, "--identity", "replica-a"])
    b = Serve(workdir, postgres_url, [*common, "--identity", "replica-b"])
    servers.extend([a, b])
    a.start()
    b.start()
    time.sleep(1.0)  # one lease round each
    roles = {s.get("/readyz").json()["role"] for s in (a, b)}
    assert roles == {"leader", "follower"}
    # Either replica takes writes; the leader ticks.
    first = b.post("/v1/rollouts", json={"spec": "reviews", "scenario": "healthy", "seed": 3}).json()["id"]
    second = a.post("/v1/rollouts", json={"spec": "ratings", "scenario": "error-regression", "seed": 4}).json()["id"]
    for rollout_id in (first, second):
        assert a.get(f"/v1/rollouts/{rollout_id}/wait", params={"timeout": 60}).json()["outcome"] is not None
    ticked = {s.proc.pid: len(s.log_events("tick")) for s in (a, b) if s.proc is not None}
    assert sorted(ticked.values())[0] == 0 and sorted(ticked.values())[1] > 0, ticked
    # Fail-over: the leader stops mid-rollout; the follower takes the lease and finishes, no tick twice.
    leader = a if a.get("/readyz").json()["role"] == "leader" else b
    follower = b if leader is a else a
    third = leader.post("/v1/rollouts", json={"spec": "reviews", "scenario": "healthy", "seed": 5}).json()["id"]
    deadline = time.monotonic() + 30
    while (leader.get(f"/v1/rollouts/{third}").json()["tick"] or 0) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert leader.kill(signal.SIGTERM) == 0
    done = follower.get(f"/v1/rollouts/{third}/wait", params={"timeout": 60}).json()
    assert done["outcome"] == "promoted"
    assert follower.get("/readyz").json()["role"] == "leader"
    for rollout_id in (first, second, third):
        check_history(history(postgres_url, rollout_id, capsys))
