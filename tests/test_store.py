"""SqlStore and the history API, on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from sqlalchemy import func, select, text
from structlog.testing import capture_logs

from analyzer.config import RolloutSpec, load_spec_text
from analyzer.evidence import CustomEvidence, Evidence
from analyzer.model import (
    ActionResult,
    Decision,
    Event,
    HeaderMatch,
    MetricVerdict,
    Notify,
    Observation,
    Phase,
    RolloutState,
    Scale,
    SetHeaderRoute,
    SetWeights,
    SubsetCounts,
    Verdict,
)
from analyzer.ports import Store
from analyzer.stats.rate_ratio import RatioEvidence
from analyzer.store import history, sql
from analyzer.store.schema import actions, events, rollouts, ticks, verdicts
from analyzer.store.sql import RolloutExists, RolloutNotFound, SqlStore, TickNotFound
from tests.test_codec import states

pytest_plugins = ("tests.servers_postgres",)

EXAMPLE = Path(__file__).resolve().parents[1] / "config" / "examples" / "reviews.yaml"
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


class FakeClock:
    def __init__(self, t: datetime) -> None:
        self.t = t

    def now(self) -> datetime:
        return self.t


@dataclass(frozen=True)
class Tick:
    state: RolloutState
    observation: Observation | None
    verdicts: tuple[MetricVerdict, ...]
    decision: Decision


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'history.db'}"
    url: str = request.getfixturevalue("empty_postgres_url")  # one server per session: each test starts empty
    return url


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def store(db_url: str, clock: FakeClock) -> Iterator[SqlStore]:
    with SqlStore(db_url, clock=clock) as s:
        yield s


@pytest.fixture(scope="module")
def spec_and_text() -> tuple[RolloutSpec, str]:
    return load_spec_text(EXAMPLE)


# ---- test data: whole rollouts built from the model types ----


def obs(minute: int, base: tuple[int, int], can: tuple[int, int]) -> Observation:
    def counts(requests: int, errors: int) -> SubsetCounts:
        return SubsetCounts(requests, errors, (requests // 2, requests - 3, requests))

    return Observation(
        start=T0 + (minute - 1) * MINUTE, end=T0 + minute * MINUTE,
        baseline=counts(*base), canary=counts(*can), stale_series=("x",) if minute == 2 else (),
    )


def judged(verdict: Verdict, e: float, ratio: float | None = 1.0) -> tuple[MetricVerdict, ...]:
    return (
        MetricVerdict("errors", verdict, f"errors {verdict}", e_value=e, threshold=200.0, ratio=ratio,
                      ci=(0.4, 2.5), canary={"rate": 0.01}, baseline={"rate": 0.01}, details={"pen": [0.1, 0.2]}),
        MetricVerdict("latency", Verdict.CONTINUE, "latency ok", e_value=0.5, threshold=200.0,
                      details={"edges": [250, 500]}),
    )


def promoted_story(rid: str) -> list[Tick]:
    """Header testing, then 10/25/50, promoted at minute 5."""
    s0 = RolloutState(rid, phase=Phase.HEADER_TESTING, tick=0, started_at=T0, step_started_at=T0,
                      weights={"v1": 100, "v2": 0}, header_route=True, reason="header testing",
                      evidence=Evidence({"errors": RatioEvidence(1.5).update(100, 3, 900, 10)}))
    header = SetHeaderRoute(HeaderMatch("end-user", "jason"), "v2")
    out = [Tick(s0, None, (), Decision("start", "header testing", (header, Notify(Event.PAUSE, "testers first"))))]
    s1 = replace(s0, tick=1, step_ticks=1, step_ticks_all=1,
                 evidence=Evidence({"errors": RatioEvidence(1.5).update(200, 4, 1800, 20)}))
    out.append(Tick(s1, obs(1, (1000, 5), (50, 0)), judged(Verdict.CONTINUE, 0.8), Decision("continue", "dwell")))
    state = s1
    for i, w in enumerate([10, 25, 50]):
        state = replace(state, phase=Phase.PROGRESSING, tick=state.tick + 1, step=i, step_ticks=0,
                        weights={"v1": 100 - w, "v2": w}, header_route=False, reason=f"step {i + 1}")
        acts = (SetHeaderRoute(None), SetWeights(state.weights)) if i == 0 else (SetWeights(state.weights),)
        out.append(Tick(state, obs(state.tick, (900, 4), (100 * w, w // 10)), judged(Verdict.PASS, 1.5),
                        Decision("advance", f"to {w}%", acts)))
    final = replace(state, phase=Phase.SUCCEEDED, tick=state.tick + 1, weights={"v1": 0, "v2": 100},
                    reason="promoted", decided_at=T0 + 5 * MINUTE)
    out.append(Tick(final, obs(final.tick, (800, 1), (800, 0)), judged(Verdict.PASS, math.inf, ratio=math.nan),
                    Decision("promote", "all gates pass",
                             (SetWeights(final.weights), Scale("v1", 0), Notify("promoted", "v2 is live")))))
    return out


def short_story(rid: str, end: Phase, at_minute: int) -> list[Tick]:
    s0 = RolloutState(rid, phase=Phase.PROGRESSING, tick=0, step=0, started_at=T0, weights={"v1": 90, "v2": 10})
    out = [Tick(s0, None, (), Decision("start", "step 1", (SetWeights(s0.weights),)))]
    for k in range(1, at_minute):
        s = replace(s0, tick=k)
        out.append(Tick(s, obs(k, (900, 9), (100, 1)), judged(Verdict.CONTINUE, 2.0), Decision("continue", "dwell")))
    weights = {"v1": 100, "v2": 0} if end is Phase.ROLLED_BACK else s0.weights
    last = replace(s0, tick=at_minute, phase=end, weights=weights, decided_at=T0 + at_minute * MINUTE)
    acts = (SetWeights(weights), Notify("rollback", "errors up")) if end is Phase.ROLLED_BACK else ()
    out.append(Tick(last, obs(at_minute, (900, 9), (100, 30)), judged(Verdict.FAIL, 500.0, ratio=30.0),
                    Decision(end.value.lower(), "stop", acts)))
    return out


def record(store: SqlStore, clock: FakeClock, rid: str, story: list[Tick]) -> list[int]:
    ids = []
    for t in story:
        clock.t = t.observation.end if t.observation else T0
        ids.append(store.record_intent(rid, t.state, t.observation, t.verdicts, t.decision))
        store.record_results(ids[-1], [ActionResult(a, ok=True) for a in t.decision.actions])
    return ids


def create(store: SqlStore, spec_and_text: tuple[RolloutSpec, str], rid: str, **meta: object) -> None:
    spec, text_ = spec_and_text
    store.create_rollout(rid, spec, text_, {"scenario": "test", **meta})


def row_counts(store: SqlStore) -> dict[str, int]:
    with store.engine.connect() as conn:
        return {
            t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
            for t in (rollouts, ticks, verdicts, actions, events)
        }


@pytest.fixture
def four_rollouts(store: SqlStore, clock: FakeClock, spec_and_text: tuple[RolloutSpec, str]) -> SqlStore:
    """r1 promoted at minute 5, r2 rolled back at minute 2, r3 paused at minute 3, r4 never ticked."""
    for i, (rid, story) in enumerate([
        ("r1", promoted_story("r1")),
        ("r2", short_story("r2", Phase.ROLLED_BACK, 2)),
        ("r3", short_story("r3", Phase.PAUSED, 3)),
        ("r4", []),
    ]):
        clock.t = T0 + i * timedelta(seconds=1)  # created_at order r1 < r2 < r3 < r4
        create(store, spec_and_text, rid, seed=i)
        record(store, clock, rid, story)
    clock.t = T0 + 5 * MINUTE  # events take the store's clock when it has one
    store.record_event("r1", 5, "promoted", "v2 is live")
    store.record_event("r2", 2, "rollback", "errors 30x baseline")
    return store


# ---- the Store protocol ----


def test_load_state_returns_each_tick_exactly(store: SqlStore, clock: FakeClock, spec_and_text) -> None:
    create(store, spec_and_text, "r1")
    assert store.load_state("r1") == RolloutState(rollout="r1")  # the initial state from create time
    previous = 0
    for t in promoted_story("r1"):
        tick_id = store.record_intent("r1", t.state, t.observation, t.verdicts, t.decision)
        assert tick_id > previous
        previous = tick_id
        assert store.load_state("r1") == t.state
    assert store.load_state("nope") is None


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(state=states)
def test_any_state_round_trips_through_the_database(store: SqlStore, spec_and_text, state: RolloutState) -> None:
    if store.load_state("r1") is None:
        create(store, spec_and_text, "r1")
    state = replace(state, tick=store.tick_count("r1"))  # tick numbers are unique per rollout
    store.record_intent("r1", state, None, (), Decision("continue", "x"))
    assert store.load_state("r1") == state


def test_sql_store_is_a_store(store: SqlStore) -> None:
    port: Store = store  # checked by the type checker; at run time: the methods exist
    assert all(callable(getattr(port, m)) for m in ("create_rollout", "record_intent", "record_results",
                                                   "record_event", "load_state", "active_rollouts"))


def test_create_twice_is_refused(store: SqlStore, spec_and_text) -> None:
    create(store, spec_and_text, "r1")
    with pytest.raises(RolloutExists, match="'r1' already exists"):
        create(store, spec_and_text, "r1")


def test_active_rollouts_exclude_terminal_phases(four_rollouts: SqlStore) -> None:
    assert four_rollouts.active_rollouts() == ["r4"]  # r1 succeeded, r2 rolled back, r3 paused


def test_a_resumed_rollout_is_active_and_unfinished_again(four_rollouts: SqlStore) -> None:
    paused = four_rollouts.load_state("r3")
    assert paused is not None and paused.phase is Phase.PAUSED
    resumed = replace(paused, tick=4, phase=Phase.PROGRESSING)
    four_rollouts.record_intent("r3", resumed, None, (), Decision("resume", "operator resumed"))
    assert four_rollouts.active_rollouts() == ["r3", "r4"]
    assert [r.id for r in history.list_rollouts(four_rollouts, outcome="running")] == ["r4", "r3"]
    summary = next(s for s in history.list_rollouts(four_rollouts) if s.id == "r3")
    assert summary.outcome is None and summary.finished_at is None and summary.phase == "Progressing"

    done = replace(resumed, tick=5, phase=Phase.SUCCEEDED, decided_at=T0 + 9 * MINUTE)
    four_rollouts.record_intent("r3", done, None, (), Decision("promote", "enough evidence"))
    four_rollouts.record_intent("r3", replace(done, tick=6), obs(12, (1, 0), (1, 0)), (), Decision("finish", "x"))
    summary = next(s for s in history.list_rollouts(four_rollouts) if s.id == "r3")
    assert (summary.outcome, summary.decision_minutes) == ("promoted", 9.0)  # from the first Succeeded tick


def test_actions_are_intents_until_results_arrive(store: SqlStore, spec_and_text) -> None:
    create(store, spec_and_text, "r1")
    t = promoted_story("r1")[-1]  # three actions
    tick_id = store.record_intent("r1", t.state, t.observation, t.verdicts, t.decision)
    before = history.actions_frame(store, "r1")
    assert list(before["seq"]) == [0, 1, 2]
    assert before["ok"].isna().all()  # written before acting

    set_weights, scale, _notify = t.decision.actions
    extra = SetWeights({"v1": 50, "v2": 50})  # e.g. re-applied after a restart: not intended in this tick
    with capture_logs() as logged:
        store.record_results(tick_id, [ActionResult(scale, ok=False, error="forbidden"),
                                       ActionResult(set_weights, True), ActionResult(extra, True)])
    assert [(e["event"], e["log_level"]) for e in logged] == [("action_result_without_intent", "warning")]
    after = history.actions_frame(store, "r1")
    assert list(after["type"]) == ["set_weights", "scale", "notify", "set_weights"]
    assert list(after["ok"]) == [True, False, None, True]  # notify: no result yet
    assert after["error"].isna().tolist() == [True, False, True, True] and after["error"].iloc[1] == "forbidden"
    assert after["action"].iloc[3] == {"type": "set_weights", "weights": {"v1": 50, "v2": 50}}


def test_unknown_ids_are_named_in_the_error(store: SqlStore, spec_and_text) -> None:
    t = promoted_story("zz")[0]
    with pytest.raises(RolloutNotFound, match="'zz'"):
        store.record_intent("zz", t.state, None, (), t.decision)
    with pytest.raises(RolloutNotFound, match="'zz'"):
        store.record_event("zz", 0, "x", "y")
    with pytest.raises(TickNotFound, match="12345"):
        store.record_results(12345, [])


def test_a_follow_up_decision_under_the_same_tick_number(store: SqlStore, spec_and_text) -> None:
    # The engine records Failed under the tick whose actions kept failing (policy.fail keeps the number).
    create(store, spec_and_text, "r1")
    t = promoted_story("r1")[1]
    store.record_intent("r1", t.state, t.observation, t.verdicts, t.decision)
    failed = replace(t.state, phase=Phase.FAILED, reason="actions failed", decided_at=T0 + 90 * timedelta(seconds=1))
    store.record_intent("r1", failed, None, (), Decision("fail", "actions failed", (Notify("failed", "x"),)))
    assert store.load_state("r1") == failed
    assert store.active_rollouts() == []
    (summary,) = history.list_rollouts(store)
    assert (summary.outcome, summary.ticks, summary.decision_minutes) == ("failed", 2, 0.5)
    assert [(r.tick, r.decision) for r in history.rollout_detail(store, "r1").timeline] == [
        (1, "continue"), (1, "fail")]


def test_without_a_clock_times_stay_on_the_rollouts_own_clock(db_url: str, spec_and_text) -> None:
    """A simulation's store has no clock: tick and event times come from the recorded (virtual) times."""
    epoch = datetime(2000, 1, 1, tzinfo=UTC)
    with SqlStore(db_url) as store:
        create(store, spec_and_text, "r1")
        start = RolloutState("r1", phase=Phase.INITIALIZING, started_at=epoch, step_started_at=epoch)
        store.record_intent("r1", start, None, (), Decision("start", "init"))  # at: started_at
        store.record_event("r1", 1, "source-unavailable", "timeout")  # before tick 1 exists: the latest tick's time
        hold = replace(start, tick=1)
        store.record_intent("r1", hold, None, (), Decision("hold", "no data"))  # at: previous + interval (60 s)
        entered = epoch + timedelta(seconds=125)
        step = replace(hold, tick=2, phase=Phase.PROGRESSING, step=0, step_started_at=entered)
        store.record_intent("r1", step, None, (), Decision("advance", "10%"))  # at: the step's start
        store.record_event("r1", 2, "step", "10%")
        frame = history.ticks_frame(store, "r1")
        events = history.events_frame(store, "r1")
    assert [t.to_pydatetime() for t in frame["at"]] == [epoch, epoch + MINUTE, epoch + timedelta(seconds=125)]
    assert [t.to_pydatetime() for t in events["at"]] == [epoch, epoch + timedelta(seconds=125)]


# ---- atomicity ----


def _assert_nothing_written(store: SqlStore, before: dict[str, int], state: RolloutState) -> None:
    assert row_counts(store) == before
    assert store.load_state("r1") == state
    assert store.phase_of("r1") == state.phase


def test_unserialisable_verdict_leaves_no_partial_tick(store: SqlStore, spec_and_text) -> None:
    create(store, spec_and_text, "r1")
    story = promoted_story("r1")
    store.record_intent("r1", story[0].state, None, (), story[0].decision)
    before = row_counts(store)
    t = story[-1]  # terminal: would also flip the rollouts row to Succeeded
    bad = (*t.verdicts, MetricVerdict("odd", Verdict.PASS, "r", details={"when": object()}))
    with pytest.raises(TypeError, match="not JSON-serialisable"):
        store.record_intent("r1", t.state, t.observation, bad, t.decision)
    _assert_nothing_written(store, before, story[0].state)
    # Nothing of the failed attempt remains: the same tick can now be written.
    store.record_intent("r1", t.state, t.observation, t.verdicts, t.decision)
    assert store.load_state("r1") == t.state


def test_failure_after_the_tick_row_rolls_everything_back(store: SqlStore, spec_and_text, monkeypatch) -> None:
    create(store, spec_and_text, "r1")
    story = promoted_story("r1")
    store.record_intent("r1", story[0].state, None, (), story[0].decision)
    before = row_counts(store)

    def boom(tick_id: int, decision: Decision) -> list[dict]:
        assert tick_id > 0  # the tick and its verdicts are already inserted, uncommitted
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(sql, "_action_rows", boom)
    t = story[-1]
    with pytest.raises(RuntimeError, match="disk on fire"):
        store.record_intent("r1", t.state, t.observation, t.verdicts, t.decision)
    _assert_nothing_written(store, before, story[0].state)
    assert store.active_rollouts() == ["r1"]


def test_non_finite_numbers_are_stored(store: SqlStore, spec_and_text) -> None:
    create(store, spec_and_text, "r1")
    t = promoted_story("r1")[-1]
    pen = (math.inf, -math.inf, math.nan, 1e300, 5e-324, 1 / 3)
    evidence = Evidence({"errors": RatioEvidence(1.5, x=1, pen=pen)})
    store.record_intent("r1", replace(t.state, evidence=evidence), t.observation, t.verdicts, t.decision)
    back = store.load_state("r1")
    assert back is not None and back.evidence is not None
    back_pen = back.evidence.metrics["errors"].pen  # type: ignore[union-attr]
    assert math.isnan(back_pen[2]) and back_pen[:2] + back_pen[3:] == pen[:2] + pen[3:]
    assert type(back_pen[3]) is float  # not turned into an int by a numeric JSON type
    detail = history.rollout_detail(store, "r1")
    assert detail.final_verdicts[0].e_value == math.inf and math.isnan(detail.final_verdicts[0].ratio or 0.0)


# ---- restarts and concurrency ----


def test_a_new_store_on_the_same_database_continues(four_rollouts: SqlStore, db_url: str) -> None:
    four_rollouts.close()
    with SqlStore(db_url) as again:
        assert again.active_rollouts() == ["r4"]
        assert again.load_state("r1") == promoted_story("r1")[-1].state
        assert again.tick_count("r1") == 6


def test_reader_while_writer(store: SqlStore, db_url: str, spec_and_text) -> None:
    create(store, spec_and_text, "r1")
    base = RolloutState("r1", phase=Phase.PROGRESSING, step=0, weights={"v1": 90, "v2": 10})
    n, errors, seen = 40, [], []

    def write() -> None:
        try:
            with SqlStore(db_url) as writer:
                for k in range(n):
                    o = obs(k + 1, (900, 1), (100, 0))
                    state = replace(base, tick=k, evidence=Evidence({"c": CustomEvidence(k)}))
                    tick_id = writer.record_intent("r1", state, o,
                                                   judged(Verdict.CONTINUE, 1.0), Decision("continue", "dwell",
                                                   (SetWeights(base.weights),)))
                    writer.record_results(tick_id, [ActionResult(SetWeights(base.weights), True)])
                    writer.record_event("r1", k, "tick", f"tick {k}")
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    thread = threading.Thread(target=write)
    with SqlStore(db_url) as reader:
        thread.start()
        while thread.is_alive():
            state = reader.load_state("r1")
            assert state is not None
            seen.append(state.tick)
            frame = history.ticks_frame(reader, ["r1"])
            assert list(frame["tick"]) == list(range(len(frame)))  # never a half-written tick
        thread.join()
        assert not errors
        assert seen == sorted(seen) and len(set(seen)) > 1  # the reader really ran alongside the writer
        assert reader.load_state("r1") == replace(base, tick=n - 1, evidence=Evidence({"c": CustomEvidence(n - 1)}))
        assert len(history.verdicts_frame(reader, "r1")) == 2 * n
        if db_url.startswith("sqlite"):
            with reader.engine.connect() as conn:
                assert conn.execute(text("PRAGMA journal_mode")).scalar_one() == "wal"
                assert conn.execute(text("PRAGMA busy_timeout")).scalar_one() > 0


# ---- history API ----


def test_summaries(four_rollouts: SqlStore) -> None:
    by_id = {s.id: s for s in history.list_rollouts(four_rollouts)}
    assert list(by_id) == ["r4", "r3", "r2", "r1"]  # newest first
    r1, r2, r3, r4 = (by_id[k] for k in ("r1", "r2", "r3", "r4"))
    assert (r1.outcome, r1.decision_minutes, r1.steps_reached, r1.max_canary_weight, r1.ticks) == (
        "promoted", 5.0, 3, 100, 6)
    assert r1.started_at == T0 and r1.finished_at == T0 + 5 * MINUTE
    assert (r1.name, r1.namespace, r1.meta) == ("reviews", "bookinfo", {"scenario": "test", "seed": 0})
    assert (r2.outcome, r2.decision_minutes, r2.steps_reached, r2.ticks) == ("rolled_back", 2.0, 1, 3)
    assert (r3.outcome, r3.phase, r3.decision_minutes) == ("paused", "Paused", 3.0)
    assert (r4.outcome, r4.phase, r4.decision_minutes, r4.steps_reached, r4.ticks) == (None, "Pending", None, 0, 0)


def test_summary_filters(four_rollouts: SqlStore) -> None:
    def ids(**kw: object) -> list[str]:
        return [s.id for s in history.list_rollouts(four_rollouts, **kw)]  # type: ignore[arg-type]

    assert ids(outcome="rolled_back") == ["r2"]
    assert ids(outcome="running") == ["r4"]
    assert ids(name="reviews", limit=2) == ["r4", "r3"]
    assert ids(name="ratings") == []
    assert ids(since=T0 + timedelta(seconds=2)) == ["r4", "r3"]
    assert ids(since=timedelta(days=1)) == []  # created in 2024 by the fake clock
    with pytest.raises(ValueError, match="'promotd' is not one of"):
        ids(outcome="promotd")


def test_rollout_detail(four_rollouts: SqlStore) -> None:
    story = promoted_story("r1")
    d = history.rollout_detail(four_rollouts, "r1")
    assert d.summary.id == "r1" and "virtualService: reviews" in d.spec_text
    assert [row.tick for row in d.timeline] == list(range(6))
    assert [row.decision for row in d.timeline] == [t.decision.kind for t in story]
    assert [row.canary_requests for row in d.timeline] == [None, 50, 1000, 2500, 5000, 800]
    assert d.timeline[2].weights == {"v1": 90, "v2": 10}
    assert [a.action for a in d.timeline[-1].actions] == list(story[-1].decision.actions)
    assert all(a.ok for row in d.timeline for a in row.actions)
    assert d.final_verdicts_tick == 5
    assert [v.metric for v in d.final_verdicts] == ["errors", "latency"]
    assert d.final_verdicts[1] == story[-1].verdicts[1]
    assert [(e.tick, e.kind, e.at) for e in d.events] == [(5, "promoted", T0 + 5 * MINUTE)]

    with pytest.raises(KeyError) as info:
        history.rollout_detail(four_rollouts, "r9")
    assert isinstance(info.value, history.RolloutNotFound) and "'r9'" in str(info.value)


def test_frames(four_rollouts: SqlStore, db_url: str) -> None:
    frame = history.ticks_frame(db_url)  # by URL, as a notebook would
    assert len(frame) == 6 + 3 + 4
    r1 = frame[frame["rollout_id"] == "r1"]
    assert list(r1["canary_weight"]) == [0, 0, 10, 25, 50, 100]
    assert list(r1["baseline_weight"]) == [100, 100, 90, 75, 50, 0]
    assert list(r1["minute"]) == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert list(r1["decision"]) == ["start", "continue", "advance", "advance", "advance", "promote"]
    assert r1["baseline_requests"].iloc[1] == 1000 and str(r1["at"].dt.tz) == "UTC"
    assert r1["stale_series"].iloc[2] == ["x"]

    v = history.verdicts_frame(four_rollouts, ["r1", "r2"])
    assert len(v) == 2 * (5 + 2)  # two metrics on every tick with an observation
    assert set(v["metric"]) == {"errors", "latency"}
    last = v[(v["rollout_id"] == "r1") & (v["tick"] == 5) & (v["metric"] == "errors")].iloc[0]
    assert last["verdict"] == "pass" and last["e_value"] == math.inf and math.isnan(last["ratio"])
    assert (last["ci_lo"], last["ci_hi"], last["threshold"]) == (0.4, 2.5, 200.0)

    e = history.events_frame(four_rollouts)
    assert list(e["kind"]) == ["promoted", "rollback"]
    assert list(history.events_frame(four_rollouts, "r2")["message"]) == ["errors 30x baseline"]

    empty = history.ticks_frame(four_rollouts, ["r4"])
    assert empty.empty and list(empty.columns) == history.TICK_COLUMNS


def test_history_refuses_a_missing_sqlite_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no history store"):
        history.list_rollouts(f"sqlite:///{tmp_path / 'typo.db'}")
