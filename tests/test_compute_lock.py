"""The daemon's ticks compute one at a time and wait on their sources side by side (analyzer.app.compute)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from analyzer import engine as engine_module
from analyzer.app.compute import ComputeLock, Released
from analyzer.app.daemon import Daemon
from analyzer.app.settings import ServeSettings
from analyzer.sim.mesh import SimulatedMesh
from analyzer.store import control
from analyzer.store.sql import SqlStore
from benchmarks.daemon import create_rollouts


class Overlap:
    """Counts how many threads are inside at once."""

    def __init__(self) -> None:
        self.now = self.most = 0
        self._lock = threading.Lock()

    def __enter__(self) -> None:
        with self._lock:
            self.now += 1
            self.most = max(self.most, self.now)

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self.now -= 1


def test_a_call_through_a_released_adapter_lets_another_thread_compute() -> None:
    lock = ComputeLock()
    waiting, computed = threading.Event(), threading.Event()

    class Source:
        def observe(self) -> str:
            waiting.set()
            assert computed.wait(5), "the other thread never got the lock while this one waited"
            return "observed"

    def tick() -> str:
        with lock.held():
            return Released(Source(), lock).observe()

    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(tick)
        assert waiting.wait(5)
        with lock.held():  # taken while the first tick waits on its source
            computed.set()
        assert first.result(5) == "observed"


def test_released_outside_a_tick_is_a_plain_call() -> None:
    lock = ComputeLock()
    assert Released([3, 1, 2], lock).index(1) == 1  # no lock held: nothing to give up, no error
    with lock.held(), lock.released(), lock.released():  # nested: only the outer one gives it up
        pass


@pytest.fixture
def daemon(tmp_path: Path) -> Daemon:
    db = f"sqlite:///{tmp_path / 'store.db'}"
    store = SqlStore(db)
    create_rollouts(store, [f"r{i}" for i in range(4)])
    d = Daemon(ServeSettings(db=db, sim=True, sim_speed=600, leader_election=False), store)
    d.leading = True
    return d


def _tick_all(d: Daemon) -> None:
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(d._run, list(d.runners)))


def test_ticks_wait_on_a_slow_source_together_and_judge_one_at_a_time(daemon: Daemon, monkeypatch) -> None:
    observing, judging = Overlap(), Overlap()
    observe, judge = SimulatedMesh.observe, engine_module.judge

    def slow_observe(self, *args, **kwargs):
        with observing:
            time.sleep(0.3)  # a Prometheus round trip
            return observe(self, *args, **kwargs)

    def counted_judge(*args, **kwargs):
        with judging:
            time.sleep(0.01)  # long enough for overlapping ticks to show
            return judge(*args, **kwargs)

    monkeypatch.setattr(SimulatedMesh, "in_process", False)  # as a networked source would be
    monkeypatch.setattr(SimulatedMesh, "observe", slow_observe)
    monkeypatch.setattr(engine_module, "judge", counted_judge)
    for i in range(4):
        daemon.runners[f"r{i}"] = daemon._runner(control.rollout_row(daemon.store, f"r{i}"))
    for _ in range(2):  # start, then the first step's weights: nothing to observe yet
        _tick_all(daemon)
        time.sleep(0.2)  # two simulated minutes at 600x
    started = time.monotonic()
    _tick_all(daemon)
    assert daemon.ticks == 12 and observing.most == 4 and judging.most == 1
    assert time.monotonic() - started < 1.2  # four 0.3 s waits side by side, not one after another


def test_in_process_adapters_are_called_without_giving_up_the_lock(daemon: Daemon) -> None:
    runner = daemon._runner(control.rollout_row(daemon.store, "r0"))
    assert not isinstance(runner.engine.metrics, Released)  # the simulated mesh computes: it keeps the lock
    assert not isinstance(runner.engine.router, Released)


def test_a_tick_that_lost_the_lease_while_waiting_for_its_turn_does_not_run(daemon: Daemon) -> None:
    daemon.runners["r0"] = daemon._runner(control.rollout_row(daemon.store, "r0"))
    with ThreadPoolExecutor(1) as pool, daemon.compute.held():  # another tick is computing
        waiting = pool.submit(daemon._run, "r0")
        time.sleep(0.2)  # the tick passed its first lease check and waits for the lock
        daemon.leading = False  # the lease is lost meanwhile
    waiting.result(5)
    assert daemon.ticks == 0 and control.last_tick(daemon.store, "r0") is None
