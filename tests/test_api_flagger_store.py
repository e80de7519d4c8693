"""The Flagger webhook's releases live in the store: replicas, restarts, concurrency and retention.

Every test talks to the ASGI app of two `serve --sim` replicas (no daemon: any replica serves the webhook) on
one store, a SQLite file or the real PostgreSQL the tests start.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from analyzer.app import flagger
from analyzer.app.api import Service
from analyzer.app.cli.main import main
from analyzer.config import RolloutSpec, load_spec
from analyzer.judge import JudgeContext, initial_evidence, judge
from analyzer.model import MetricVerdict, Observation, SubsetCounts
from analyzer.ports import SourceUnavailable
from analyzer.sim.clock import EPOCH
from analyzer.sim.mesh import SimulatedMesh
from analyzer.sim.scenario import load_scenario
from analyzer.store.schema import hook_releases
from analyzer.store.sql import make_engine
from analyzer.traffic.memory import MemoryRouter
from tests.daemon_support import READ, REVIEWS, Env, app_for, make_env, service

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

pytest_plugins = ("tests.servers_postgres",)

REGRESSION = "late-error-regression"  # healthy for five minutes, then 3x the errors


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def env(request: pytest.FixtureRequest, tmp_path: Path) -> Env:
    made = make_env(tmp_path)
    if request.param == "postgres":
        made.db = request.getfixturevalue("empty_postgres_url")
    return made


class Replica:
    """One `serve` process: its own store connection, its own app."""

    def __init__(self, env: Env, stack: ExitStack, *, sim: bool = True) -> None:
        self.svc: Service = service(env, daemon=False, sim=sim)
        stack.callback(self.svc.store.close)
        self.client = stack.enter_context(TestClient(app_for(self.svc)))

    def call(self, checksum: str, scenario: str, seed: int = 3, name: str = "reviews") -> tuple[int, dict]:
        body = {"name": name, "namespace": "bookinfo", "phase": "Progressing", "checksum": checksum,
                "metadata": {"spec": "reviews", "scenario": scenario, "seed": str(seed)}}
        r = self.client.post("/v1/hooks/flagger", json=body, headers=READ)
        assert r.status_code in (200, 412), r.text
        return r.status_code, r.json()


@pytest.fixture
def replicas(env: Env) -> Iterator[list[Replica]]:
    with ExitStack() as stack:
        yield [Replica(env, stack), Replica(env, stack)]


def one_process(spec: RolloutSpec, scenario: str, seed: int, calls: int) -> list[list[MetricVerdict]]:
    """What one process with one continuous simulated mesh judges call by call (the webhook before the store)."""
    router = MemoryRouter()
    router.set_weights(spec, {spec.target.baseline.subset: 50, spec.target.canary.subset: 50})
    mesh = SimulatedMesh(load_scenario(scenario), router, seed=seed, start=EPOCH, edges=spec.analysis.bucket_edges)
    evidence, end, out = initial_evidence(spec), EPOCH, []
    for i in range(calls):
        start, end = end, end + timedelta(seconds=spec.timing.interval)
        observation, unavailable = None, None
        try:
            observation = mesh.observe(spec, start, end)
        except SourceUnavailable as exc:
            unavailable = str(exc)
        evidence, verdicts = judge(spec, evidence, observation,
                                   JudgeContext(assess_promotion=True, unavailable=unavailable, seed=i))
        out.append(verdicts)
    return out


def metrics_of(verdicts: list[MetricVerdict]) -> list[tuple[str, str, float | None]]:
    return [(v.metric, v.verdict.value, flagger._finite(v.e_value)) for v in verdicts]


def body_metrics(body: dict) -> list[tuple[str, str, float | None]]:
    return [(m["name"], m["verdict"], m["evidence"]) for m in body["metrics"]]


def test_calls_alternating_between_replicas_judge_each_interval_once_as_one_process_would(replicas):
    a, b = replicas
    spec, _ = a.svc.load_spec("reviews")
    bad = [(a if i % 2 == 0 else b).call("rev-bad", REGRESSION) for i in range(40)]
    first_fail = next(i for i, (code, _) in enumerate(bad) if code > 202)
    assert first_fail >= 5 and all(code == 200 for code, _ in bad[:first_fail])
    assert all(code == 412 for code, _ in bad[first_fail:])  # proven stays proven, on either replica
    assert [body["intervals"] for _, body in bad[:first_fail + 1]] == list(range(1, first_fail + 2))
    assert {body["intervals"] for _, body in bad[first_fail:]} == {first_fail + 1}
    # Call by call the same verdicts and e-values as one process with one continuous mesh.
    reference = one_process(spec, REGRESSION, 3, first_fail + 1)
    assert [body_metrics(body) for _, body in bad[:first_fail + 1]] == [metrics_of(v) for v in reference]
    assert any(v.verdict.value == "fail" and v.gate for v in reference[first_fail])
    # A healthy canary keeps 200 whichever replica answers.
    healthy = [(b if i % 3 else a).call("rev-ok", "healthy") for i in range(15)]
    assert {code for code, _ in healthy} == {200}
    assert [body["intervals"] for _, body in healthy] == list(range(1, 16))


def test_a_restarted_replica_continues_the_release_and_a_new_checksum_starts_fresh(env, replicas):
    a, b = replicas
    spec, _ = a.svc.load_spec("reviews")
    before = [a.call("rev-1", REGRESSION, seed=5) for _ in range(3)]
    with ExitStack() as stack:  # the process restarts: a new app on the same store, nothing in memory
        restarted = Replica(env, stack)
        after = [restarted.call("rev-1", REGRESSION, seed=5) for _ in range(3)]
    assert [body["intervals"] for _, body in before + after] == [1, 2, 3, 4, 5, 6]
    reference = one_process(spec, REGRESSION, 5, 6)
    assert [body_metrics(body) for _, body in before + after] == [metrics_of(v) for v in reference]
    # A new revision (checksum) of the same canary starts from no evidence; the old one is untouched.
    code, fresh = b.call("rev-2", REGRESSION, seed=5)
    assert code == 200 and fresh["intervals"] == 1 and body_metrics(fresh) == metrics_of(reference[0])
    assert b.call("rev-1", REGRESSION, seed=5)[1]["intervals"] == 7
    # Another canary with the same checksum is another release.
    assert b.call("rev-1", REGRESSION, seed=5, name="ratings")[1]["intervals"] == 1


def test_concurrent_calls_on_two_replicas_never_judge_an_interval_twice_or_lose_one(env, replicas):
    threads_per_replica, calls_each = 4, 6
    seen: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def caller(replica: Replica) -> None:
        try:
            for _ in range(calls_each):
                _, body = replica.call("rev-busy", "healthy", seed=11)
                with lock:
                    seen.append(body["intervals"])
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=caller, args=(r,)) for r in replicas for _ in range(threads_per_replica)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    total = 2 * threads_per_replica * calls_each
    # Each simulated call judges one interval: every call saw its own count, none judged twice, none lost.
    assert sorted(seen) == list(range(1, total + 1))
    engine = make_engine(env.db)
    try:
        with engine.connect() as conn:
            row = conn.execute(select(hook_releases.c.intervals, hook_releases.c.version)
                               .where(hook_releases.c.checksum == "rev-busy")).one()
    finally:
        engine.dispose()
    assert row.intervals == total and row.version == total


def test_db_prune_drops_releases_not_called_for_the_retention(env, replicas, capsys):
    a, _ = replicas
    for _ in range(3):
        a.call("rev-old", "healthy")
    a.call("rev-new", "healthy")
    engine = make_engine(env.db)
    try:
        with engine.begin() as conn:  # the pipeline of rev-old stopped calling 40 days ago
            conn.execute(update(hook_releases).where(hook_releases.c.checksum == "rev-old")
                         .values(updated_at=func.now() - timedelta(days=40),
                                 created_at=func.now() - timedelta(days=41)))
        assert main(["db", "prune", "--db", env.db, "--older-than", "30d", "--dry-run"]) == 0
        assert "would delete 1 Flagger webhook releases" in capsys.readouterr().out
        assert main(["db", "prune", "--db", env.db, "--older-than", "30d"]) == 0
        assert "deleted 1 Flagger webhook releases" in capsys.readouterr().out
        with engine.connect() as conn:
            left = conn.execute(select(hook_releases.c.checksum)).scalars().all()
    finally:
        engine.dispose()
    assert left == ["rev-new"]
    assert a.call("rev-old", "healthy")[1]["intervals"] == 1  # called again after pruning: a fresh release
    assert a.call("rev-new", "healthy")[1]["intervals"] == 2


def test_a_simulated_mesh_rebuilt_from_its_stored_generator_continues_exactly():
    """Why the row keeps the generator state: a window's draws depend on every earlier window's."""
    spec = load_spec(REVIEWS)
    step = timedelta(seconds=spec.timing.interval)

    def observe(mesh: SimulatedMesh, k: int) -> Observation | str:
        try:
            return mesh.observe(spec, EPOCH + k * step, EPOCH + (k + 1) * step)
        except SourceUnavailable as exc:
            return str(exc)

    for scenario in ("healthy", REGRESSION, "telemetry-gap"):
        def mesh(name: str = scenario) -> SimulatedMesh:
            router = MemoryRouter()
            router.set_weights(spec, {spec.target.baseline.subset: 70, spec.target.canary.subset: 30})
            return SimulatedMesh(load_scenario(name), router, seed=7, start=EPOCH, edges=spec.analysis.bucket_edges)

        continuous, state, counted = mesh(), None, 0
        for k in range(16):
            rebuilt = mesh()
            if state is not None:
                rebuilt.rng.bit_generator.state = flagger._rng_in(state)
            want, got = observe(continuous, k), observe(rebuilt, k)
            assert got == want, (scenario, k)
            if k > 0 and isinstance(want, Observation) and want.baseline is not None:
                # Not a pure function of (scenario, seed, window): the window alone, from the seed, differs.
                assert observe(mesh(), k) != want, (scenario, k)
                counted += 1
            state = flagger._rng_out(rebuilt)
        assert counted >= 8, scenario


class CountingSource:
    """A live metric source (Prometheus in a cluster) that records the windows it is asked about."""

    def __init__(self) -> None:
        self.windows: list[tuple[datetime, datetime]] = []
        self.lock = threading.Lock()

    def query_lag(self, spec: RolloutSpec) -> float:
        return 0.0

    def observe(self, spec: RolloutSpec, start: datetime, end: datetime) -> Observation:
        with self.lock:
            self.windows.append((start, end))
        edges = spec.analysis.bucket_edges
        counts = SubsetCounts(6000, 6, tuple([6000] * (len(edges) + 1)))
        return Observation(start, end, counts, counts, edges)


def test_live_calls_on_two_replicas_judge_each_wall_clock_interval_once(env, monkeypatch):
    source = CountingSource()
    monkeypatch.setattr(flagger.wiring, "metric_source", lambda spec: source)
    t0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    now = [t0]

    class Clock(datetime):
        @classmethod
        def now(cls, tz: tzinfo | None = None) -> Clock:  # type: ignore[override]
            return now[0]  # type: ignore[return-value]

    monkeypatch.setattr(flagger, "datetime", Clock)
    with ExitStack() as stack:
        a, b = (Replica(env, stack, sim=False) for _ in range(2))
        minute = timedelta(seconds=a.svc.load_spec("reviews")[0].timing.interval)

        def call(replica: Replica) -> int:
            body = {"name": "reviews", "namespace": "bookinfo", "checksum": "live-1", "metadata": {"spec": "reviews"}}
            r = replica.client.post("/v1/hooks/flagger", json=body, headers=READ)
            assert r.status_code == 200, r.text
            return int(r.json()["intervals"])

        assert call(a) == 1  # the first call judges the interval that just ended
        now[0] = t0 + minute / 2
        assert call(b) == 1  # called again within the interval: answered from what is known
        now[0] = t0 + minute * 2.5
        assert call(b) == 2  # the whole time since the last judged interval, once
        # A burst on both replicas at one moment: one judges the interval, the others answer from it.
        now[0] = t0 + minute * 4
        seen: list[int] = []
        threads = [threading.Thread(target=lambda r=r: seen.append(call(r))) for r in (a, b) * 4]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    assert seen == [3] * 8
    judged = sorted(set(source.windows))  # a lost compare-and-set may have read a window it did not judge
    assert judged == [(t0 - minute, t0), (t0, t0 + minute * 2.5), (t0 + minute * 2.5, t0 + minute * 4)]


def test_bad_release_fields_get_one_line_naming_the_field(replicas):
    a, _ = replicas
    base = {"name": "reviews", "namespace": "bookinfo", "metadata": {"spec": "reviews"}}
    for extra, field in (({"checksum": "abc\x00def"}, "checksum"),
                         ({"metadata": {"spec": "reviews", "seed": "²"}}, "metadata.seed"),
                         ({"metadata": {"spec": "reviews", "seed": str(2**64)}}, "metadata.seed"),
                         ({"metadata": {"spec": "reviews", "scenario": "nope"}}, "metadata.scenario")):
        r = a.client.post("/v1/hooks/flagger", json={**base, **extra}, headers=READ)
        assert r.status_code == 400 and r.json()["error"].startswith(field), (extra, r.text)
