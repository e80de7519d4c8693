"""Daemon scale: N simulated rollouts (reviews spec, five metrics each) in one `serve --sim` process.

    python -m benchmarks.daemon --rollouts 1000 [--rounds 3] [--sim-speed 4] [--out benchmarks/results]

The rollouts are written to the store before the process starts, so its first sync schedules them all at
once and every round is one burst of N ticks. Reported:

* the wall time of one scheduler round (first to last tick of the same tick number, from the store);
* CPU seconds of the process per round, and that as a share of one core at the spec's 60 s interval
  (the work per round does not depend on --sim-speed, which only shortens the benchmark);
* peak RSS (VmHWM), and ticks lost (runs APScheduler missed or skipped, from /metrics).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import yaml
from sqlalchemy import func, select

from analyzer.config import parse_spec
from analyzer.store import control
from analyzer.store.schema import ticks
from analyzer.store.sql import SqlStore

ROOT = Path(__file__).resolve().parents[1]
INTERVAL_S = 60.0
SPEC = """\
metadata: {name: reviews-%(i)04d}
target:
  namespace: bench
  virtualService: reviews-%(i)04d
  host: reviews-%(i)04d
  baseline: {subset: v1}
  canary: {subset: v2}
strategy: {steps: [10, 25, 50, 100]}
timing: {interval: 1m, minDwell: 30, budget: 24h}
analysis:
  metrics:
    - {name: errors, type: error-rate, tolerance: 1.5, mde: 2}
    - {name: latency, type: latency, sloMs: 250, edges: [250], tolerance: 1.5, mde: 2}
    - {name: latency-slow, type: latency, sloMs: 500, edges: [500], tolerance: 1.5, mde: 2}
    - {name: latency-tail, type: latency, sloMs: 1000, edges: [1000], tolerance: 1.5, mde: 2}
    - {name: latency-max, type: latency, sloMs: 2500, edges: [2500], tolerance: 1.5, mde: 2}
sources:
  metrics: {type: simulated}
"""
TOKEN = "bench-operate-token-0123456789"


def _proc(pid: int) -> tuple[float, int]:
    """CPU seconds (user + system) and peak RSS in bytes of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    hwm = next(int(x.split()[1]) for x in Path(f"/proc/{pid}/status").read_text().splitlines()
               if x.startswith("VmHWM:"))
    return cpu, hwm * 1024


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _max_tick(store: SqlStore) -> tuple[int, int]:
    """(lowest last tick over rollouts, number of rollouts with a tick)."""
    per = select(ticks.c.rollout_id, func.max(ticks.c.tick).label("t")).group_by(ticks.c.rollout_id).subquery()
    with store.engine.connect() as conn:
        row = conn.execute(select(func.min(per.c.t), func.count())).first()
    return (-1 if row is None or row[0] is None else int(row[0])), (0 if row is None else int(row[1]))


def _round_spans(store: SqlStore, tick_numbers: list[int]) -> list[float]:
    with store.engine.connect() as conn:
        spans = []
        for k in tick_numbers:
            lo, hi = conn.execute(select(func.min(ticks.c.recorded_at), func.max(ticks.c.recorded_at))
                                  .where(ticks.c.tick == k)).first()
            spans.append((hi - lo).total_seconds())
    return spans


def _metric(text: str, name: str) -> float:
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name))


def create_rollouts(store: SqlStore, ids: Sequence[str]) -> None:
    """Rollouts of the reviews template (the i-th with seed i, healthy) that a `serve --sim` daemon picks up."""
    for i, rollout_id in enumerate(ids):
        text = SPEC % {"i": i}
        control.create_rollout(store, rollout_id, parse_spec(yaml.safe_load(text)), text,
                               {"owner": "daemon", "mode": "sim", "scenario": "healthy", "seed": i})


def run(rollouts: int, rounds: int, speed: float, concurrency: int, workdir: Path) -> dict[str, Any]:
    db = f"sqlite:///{workdir / 'bench.db'}"
    store = SqlStore(db)
    create_rollouts(store, [f"bench-{i:04d}" for i in range(rollouts)])
    (workdir / "tokens").write_text(f"operate {TOKEN}\n")
    port = _free_port()
    argv = [sys.executable, "-m", "analyzer.app.cli", "serve", "--sim", "--sim-speed", str(speed), "--db", db,
            "--listen", f"127.0.0.1:{port}", "--token-file", str(workdir / "tokens"), "--no-leader-election",
            "--max-concurrent-ticks", str(concurrency), "--serve-log-level", "warning"]
    # glibc gives each thread its own malloc arena; two keep the tick pool's memory from fanning out.
    env = {**os.environ, "MALLOC_ARENA_MAX": os.environ.get("MALLOC_ARENA_MAX", "2")}
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=(workdir / "serve.log").open("wb"), env=env)
    wall_interval = INTERVAL_S / speed
    try:
        # Warm-up: every rollout started (tick 0) and ticked once (the first judged interval).
        deadline = time.monotonic() + 600
        while _max_tick(store)[0] < 1:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"serve stopped or never ticked:\n{(workdir / 'serve.log').read_text()[-2000:]}")
            time.sleep(0.5)
        first, _ = _max_tick(store)
        cpu0, _ = _proc(proc.pid)
        t0 = time.monotonic()
        while _max_tick(store)[0] < first + rounds:
            if proc.poll() is not None or time.monotonic() > t0 + 20 * rounds * wall_interval + 600:
                raise SystemExit("serve stopped or fell behind")
            time.sleep(0.2)
        cpu1, hwm = _proc(proc.pid)
        wall = time.monotonic() - t0
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=30).text
        spans = _round_spans(store, list(range(first + 1, first + rounds + 1)))
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=120)
    cpu_round = (cpu1 - cpu0) / rounds
    return {
        "rollouts": rollouts,
        "metrics_per_rollout": 5,
        "interval_s": INTERVAL_S,
        "sim_speed": speed,
        "max_concurrent_ticks": concurrency,
        "rounds_measured": rounds,
        "round_wall_s": {"mean": round(sum(spans) / len(spans), 2), "max": round(max(spans), 2)},
        "cpu_s_per_round": round(cpu_round, 2),
        "cpu_ms_per_tick": round(1000 * cpu_round / rollouts, 2),
        "share_of_one_core_at_60s": round(cpu_round / INTERVAL_S, 3),
        "peak_rss_mb": round(hwm / 2**20, 1),
        "ticks_lost": int(_metric(metrics, "canary_analyzer_ticks_lost_total")),
        "tick_errors": int(_metric(metrics, "canary_analyzer_tick_errors_total")),
        "measured_wall_s": round(wall, 1),
        "serve_exit_code": code,
        "cores": os.cpu_count(),
        "malloc_arena_max": env["MALLOC_ARENA_MAX"],
        "targets": {"share_of_one_core_at_60s": 0.25, "peak_rss_mb": 300, "ticks_lost": 0},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rollouts", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sim-speed", type=float, default=4.0, help="simulated seconds per real second")
    parser.add_argument("--concurrency", type=int, default=4, help="--max-concurrent-ticks")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = run(args.rollouts, args.rounds, args.sim_speed, args.concurrency, Path(tmp))
    text = json.dumps(result, indent=2)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"daemon_{args.rollouts}.json").write_text(text + "\n")


if __name__ == "__main__":
    main()
