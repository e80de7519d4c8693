"""Evidence windows (issue 9 §2, §3): none spans a weight change; after a gap the next starts at the last common edge.

A scripted source records the windows the real Engine and replay ask for, and answers with data, a
gap for both (resume from its start or its end) or no answer, as each test says.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from analyzer.config import RolloutSpec, parse_spec
from analyzer.engine import Engine
from analyzer.model import Command, DataGap, Observation, Phase, Resume, RolloutState, SubsetCounts
from analyzer.notify.log import LogNotifier
from analyzer.ports import Adapters, SourceUnavailable
from analyzer.replay import replay
from analyzer.sim.clock import VirtualClock
from analyzer.store.codec import decode_state, encode_state
from analyzer.store.null import NullStore
from analyzer.traffic.memory import MemoryRouter
from analyzer.workloads.memory import MemoryScaler

T0 = datetime(2026, 1, 1, tzinfo=UTC)
LAG = timedelta(seconds=15)
MIN = timedelta(minutes=1)


def make_spec(steps: list[int], min_dwell: int = 2) -> RolloutSpec:
    return parse_spec({
        "metadata": {"name": "reviews"},
        "target": {"namespace": "bookinfo", "virtualService": "reviews", "host": "reviews",
                   "baseline": {"subset": "v1"}, "canary": {"subset": "v2"}},
        "strategy": {"steps": steps},
        "timing": {"interval": "1m", "minDwell": min_dwell, "budget": "2h"},
        "analysis": {"metrics": [{"type": "error-rate"}]},
        "sources": {"metrics": {"type": "prometheus", "url": "http://127.0.0.1:9", "scrapeInterval": "15s"}},
    })


class ScriptedSource:
    """Equal subsets, 600 requests a minute each; `script[k]` for the k-th call: "gap", "bad" or "down"."""

    def __init__(self, script: dict[int, str] | None = None, router: MemoryRouter | None = None) -> None:
        self.script = script or {}
        self.router = router or MemoryRouter()
        self.windows: list[tuple[datetime, datetime]] = []
        self.rng = np.random.default_rng(0)

    def query_lag(self, spec: RolloutSpec) -> float:
        return LAG.total_seconds()

    def observe(self, spec: RolloutSpec, start: datetime, end: datetime) -> Observation:
        k = len(self.windows)
        self.windows.append((start, end))
        what = self.script.get(k)
        if what == "down":
            raise SourceUnavailable("connection refused")
        if what == "gap":
            return Observation(start, end, None, None, gap=DataGap("canary", "canary: missed a scrape", Resume.START))
        if what == "bad":
            return Observation(start, end, None, None,
                               gap=DataGap("canary", "canary: value NaN", Resume.END, unreadable=True))
        n = max(2, round(1200 * (end - start) / MIN))
        share = self.router.get_weights(spec)["v2"] / 100
        n_c = int(self.rng.binomial(n, share))
        return Observation(start, end, SubsetCounts(n - n_c, int(self.rng.binomial(n - n_c, 0.01))),
                           SubsetCounts(n_c, int(self.rng.binomial(n_c, 0.01))))


def engine(spec: RolloutSpec, source: ScriptedSource) -> tuple[Engine, VirtualClock]:
    clock = VirtualClock(T0)
    adapters = Adapters(metrics=source, router=source.router, scaler=MemoryScaler(), notifier=LogNotifier(),
                        store=NullStore(), clock=clock)
    e = Engine(spec, "r", adapters)
    return e, clock


def ticks(e: Engine, clock: VirtualClock, n: int) -> None:
    for _ in range(n):
        clock.advance(60)
        e.tick()


def test_the_first_window_of_every_step_starts_one_scrape_after_the_change():
    source = ScriptedSource()
    e, clock = engine(make_spec([10, 25, 50], min_dwell=2), source)
    e.start()
    changes: list[datetime] = []
    for _ in range(8):
        clock.advance(60)
        before = e.state.step
        e.tick()
        if e.state.step != before:
            changes.append(e.state.step_started_at)  # type: ignore[arg-type]
    assert len(changes) >= 3
    for change in changes:
        after = [w for w in source.windows if w[1] > change]
        if after:
            first = after[0]
            assert first == (change + LAG, change + MIN - LAG)  # shorter than an interval, all at the new weight
    # No window holds a change: every window lies on one side of each change.
    for start, end in source.windows:
        assert not any(start < c + LAG and end > c for c in changes), (start, end)


def test_after_a_gap_the_window_reaches_back_to_the_last_common_edge():
    # Calls: 0 and 1 data, 2 and 3 gaps waiting for the end edge, 4 data, 5 bad values, 6 data, 7 unavailable, 8 data.
    source = ScriptedSource({2: "gap", 3: "gap", 5: "bad", 7: "down"})
    e, clock = engine(make_spec([50], min_dwell=30), source)
    e.start()
    ticks(e, clock, 10)
    w = source.windows
    assert w[2][0] == w[1][1]
    assert w[3][0] == w[2][0] and w[4][0] == w[2][0]  # resumed from the last edge both subsets had
    assert w[4][1] - w[4][0] == 3 * MIN
    assert w[6][0] == w[5][1]  # unreadable values, good end edge: start afresh after them
    assert w[8][0] == w[7][0]  # no answer: ask again from the same edge
    assert e.state.last_edge == w[-1][1]
    assert e.state.phase is Phase.PROGRESSING


def test_a_command_starts_the_windows_afresh_and_the_edge_is_persisted():
    source = ScriptedSource({2: "gap"})
    e, clock = engine(make_spec([50], min_dwell=30), source)
    e.start()
    ticks(e, clock, 4)
    edge = e.state.last_edge
    assert edge == source.windows[-1][0]  # waiting over the gap
    assert decode_state(encode_state(e.state)).last_edge == edge
    clock.advance(60)
    e.tick(Command.PAUSE)
    e.tick(Command.RESUME)
    resumed = clock.now()
    assert e.state.last_edge == resumed + LAG  # the first scrape after the routes the resume re-applies
    clock.advance(60)
    e.tick()
    assert source.windows[-1] == (resumed + LAG, resumed + MIN - LAG)


class LaggingSplitSource(ScriptedSource):
    """Answers the first window after each weight change with the previous weight's split, as a window that
    straddled the change would; `ScriptedSource`'s windows otherwise."""

    def __init__(self) -> None:
        super().__init__()
        self.previous = self.current = 0

    def observe(self, spec: RolloutSpec, start: datetime, end: datetime) -> Observation:
        weight = self.router.get_weights(spec)["v2"]
        if weight != self.current:
            self.previous, self.current = self.current, weight
            if self.previous > 0:  # from the second step on: the first window reads like the old split
                self.router.set_weights(spec, {"v1": 100 - self.previous, "v2": self.previous})
                try:
                    return super().observe(spec, start, end)
                finally:
                    self.router.set_weights(spec, {"v1": 100 - weight, "v2": weight})
        return super().observe(spec, start, end)


def test_the_first_window_of_a_step_is_checked_for_a_sample_ratio_mismatch():
    source = LaggingSplitSource()
    e, clock = engine(make_spec([10, 50], min_dwell=2), source)
    e.start()
    reasons = []
    for _ in range(6):
        clock.advance(60)
        out = e.tick()
        reasons.append(out.decision.reason)
        if e.state.phase is Phase.PAUSED:
            break
    assert e.state.phase is Phase.PAUSED and e.state.step == 1, reasons
    assert "sample-ratio mismatch" in e.state.reason
    assert e.state.step_ticks_all == 0  # halted on the step's first window, the one the old rule skipped


def test_a_step_whose_first_window_holds_the_new_split_goes_on():
    source = ScriptedSource()
    e, clock = engine(make_spec([10, 50], min_dwell=2), source)
    e.start()
    ticks(e, clock, 6)
    assert e.state.phase is not Phase.PAUSED and e.state.step == 1


def test_a_gap_longer_than_an_hour_is_given_up_for_both_sides():
    source = ScriptedSource({k: "gap" for k in range(1, 70)})
    e, clock = engine(make_spec([50], min_dwell=200), source)
    e.start()
    ticks(e, clock, 75)
    assert max(end - start for start, end in source.windows) <= timedelta(hours=1)
    assert source.windows[-1][1] - source.windows[-1][0] <= 2 * MIN


def test_replay_follows_the_same_window_rules():
    source = ScriptedSource({2: "gap", 3: "gap", 5: "bad", 7: "down"})
    spec = make_spec([50], min_dwell=30)
    report = replay(spec, source, T0, T0 + 10 * MIN)
    w = source.windows
    assert [(s - T0) / MIN for s, _ in w] == [0, 1, 2, 2, 2, 5, 6, 7, 7, 9]
    assert [(e - T0) / MIN for _, e in w] == list(range(1, 11))
    dq = report.data_quality
    assert [(g.start - T0) / MIN for g in dq.gaps] == [2, 2, 5, 7]
    assert [g.kind.value for g in dq.gaps] == ["edge", "edge", "unreadable", "unavailable"]
    assert dq.intervals == 10 and dq.intervals_with_data == 6


def test_state_without_last_edge_still_loads():
    data = encode_state(RolloutState(rollout="r"))
    del data["last_edge"]
    assert decode_state(data).last_edge is None


def test_replay_gives_up_a_gap_longer_than_an_hour_for_both_sides():
    source = ScriptedSource({k: "gap" for k in range(0, 70)})
    replay(make_spec([50], min_dwell=30), source, T0, T0 + 75 * MIN)
    assert max(end - start for start, end in source.windows) <= timedelta(hours=1)
    assert source.windows[-1][1] - source.windows[-1][0] <= 6 * MIN
