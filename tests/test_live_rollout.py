"""Live scrape: real rollouts on the wall clock, judged from a real Prometheus scraping the simulated mesh.

Two services roll out at once (one healthy, one with 10x the errors), each with its own in-memory
router and real Engine reading PrometheusMetricSource. The mesh serves /metrics in Istio's format,
routing by each router's current weights; Prometheus scrapes it every second; the engines tick
every 5 s. The whole module takes about 25 s of wall time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pytest

from analyzer.config import RolloutSpec, parse_spec
from analyzer.engine import Engine, TickOutcome
from analyzer.model import Phase
from analyzer.notify.log import LogNotifier
from analyzer.ports import Adapters
from analyzer.sim.clock import WallClock
from analyzer.sim.live import LiveMesh, mid_scrape, render, run_in_real_time
from analyzer.sim.scenario import Scenario
from analyzer.sources.prometheus.source import PrometheusMetricSource
from analyzer.store.null import NullStore
from analyzer.traffic.memory import MemoryRouter
from analyzer.workloads.memory import MemoryScaler

if TYPE_CHECKING:
    from analyzer.sim.metrics_server import MetricsServer
    from tests.servers_prometheus import RunningPrometheus

pytest_plugins = ["tests.servers_prometheus"]

SCRAPE_S = 1.0  # the live_prometheus fixture's scrape interval
INTERVAL_S = 5.0  # five scrapes per interval
RPS = 2000.0
BASE_ERROR = 0.01
DEADLINE_S = 105.0  # from the start of the rollouts; both normally finish within 20 s


def make_spec(service: str, url: str) -> RolloutSpec:
    return parse_spec({
        "metadata": {"name": service},
        "target": {"namespace": "bookinfo", "virtualService": service,
                   "host": f"{service}.bookinfo.svc.cluster.local",
                   "baseline": {"subset": "v1"}, "canary": {"subset": "v2"}},
        "strategy": {"steps": [50]},
        "timing": {"interval": f"{INTERVAL_S:g}s", "minDwell": 2, "budget": "90s"},
        "analysis": {"metrics": [{"type": "error-rate"},
                                 # Almost no request is slower than 500 ms: promotion needs the opt-in rule.
                                 {"type": "latency", "sloMs": 500, "negligibleRate": 0.001}]},
        "sources": {"metrics": {"type": "prometheus", "url": url, "scrapeInterval": f"{SCRAPE_S:g}s",
                                "timeout": "2s", "retries": 1}},
    })


def scenario(error_ratio: float) -> Scenario:
    return Scenario.model_validate({"traffic": {"rps": RPS}, "baseline": {"error_rate": BASE_ERROR},
                                    "regression": {"error_ratio": error_ratio}})


@dataclass
class Run:
    spec: RolloutSpec
    router: MemoryRouter
    scaler: MemoryScaler
    mesh: LiveMesh
    engine: Engine
    outcomes: list[TickOutcome] = field(default_factory=list)
    tick_times: list[float] = field(default_factory=list)


def make_run(service: str, url: str, error_ratio: float, seed: int) -> Run:
    spec = make_spec(service, url)
    router, scaler = MemoryRouter(), MemoryScaler()
    mesh = LiveMesh(spec, scenario(error_ratio), router, seed=seed)
    adapters = Adapters(metrics=PrometheusMetricSource(backoff_s=0.1), router=router, scaler=scaler,
                        notifier=LogNotifier(), store=NullStore(), clock=WallClock())
    engine = Engine(spec, f"{service}-live", adapters, seed=seed)
    return Run(spec, router, scaler, mesh, engine)


@pytest.fixture(scope="module")
def runs(live_prometheus: RunningPrometheus, metrics_server: MetricsServer) -> dict[str, Run]:
    healthy = make_run("reviews", live_prometheus.url, 1.0, seed=1)
    regressed = make_run("details", live_prometheus.url, 10.0, seed=2)
    meshes = [healthy.mesh, regressed.mesh]
    metrics_server.set_render(lambda: render(meshes))
    began = time.monotonic()
    while len(healthy.mesh.scrapes) < 2:  # learn the scrape phase
        assert time.monotonic() - began < 10, "Prometheus did not scrape the live mesh"
        time.sleep(0.1)
    start_at = mid_scrape([s.t for s in healthy.mesh.scrapes], SCRAPE_S, time.time() + 0.2)
    by_engine = {id(r.engine): r for r in (healthy, regressed)}

    def record(engine: Engine, outcome: TickOutcome) -> None:
        run = by_engine[id(engine)]
        run.outcomes.append(outcome)
        run.tick_times.append(time.time())

    run_in_real_time([healthy.engine, regressed.engine], start_at=start_at, deadline=start_at + DEADLINE_S,
                     on_tick=record)
    time.sleep(1.5 * SCRAPE_S)  # one more scrape, so every judged window has a scrape after it on record
    metrics_server.set_render(lambda: "")
    return {"healthy": healthy, "regressed": regressed}


def decisions(run: Run) -> list[str]:
    return [o.decision.kind for o in run.outcomes]


@pytest.mark.prometheus
def test_canary_with_ten_times_the_errors_is_rolled_back(runs):
    run = runs["regressed"]
    assert run.engine.state.phase is Phase.ROLLED_BACK, (run.engine.state.reason, decisions(run))
    # Judged first on tick 2 (tick 1 only sends the canary its 50%); regressions this large fail at once.
    assert decisions(run)[:3] == ["advance", "rollback", "finish"]
    assert run.router.get_weights(run.spec) == {"v1": 100, "v2": 0}
    assert run.scaler.replicas["v2"] == 0
    errors = next(v for v in run.outcomes[1].verdicts if v.metric == "errors")
    assert errors.verdict.value == "fail" and errors.ratio is not None and errors.ratio > 4


@pytest.mark.prometheus
def test_healthy_canary_is_promoted_and_never_rolled_back(runs):
    run = runs["healthy"]
    assert "rollback" not in decisions(run)
    assert run.engine.state.phase is Phase.SUCCEEDED, (run.engine.state.reason, decisions(run))
    assert run.router.get_weights(run.spec) == {"v1": 0, "v2": 100}
    judged = [o for o in run.outcomes if o.observation is not None]
    assert len(judged) >= run.spec.timing.min_dwell
    assert all(v.verdict.value != "halt" for o in judged for v in o.verdicts)  # no SRM, no shared outage


@pytest.mark.prometheus
@pytest.mark.parametrize("name", ["healthy", "regressed"])
def test_every_judged_window_holds_exactly_what_the_mesh_served(runs, name):
    run = runs[name]
    judged = [o for o in run.outcomes if o.observation is not None]
    assert judged
    for o in judged:
        obs = o.observation
        assert obs is not None
        baseline, canary = run.mesh.served_between(obs.start.timestamp(), obs.end.timestamp())
        assert (obs.baseline, obs.canary) == (baseline, canary), f"window ending {obs.end}"
        # The canary had its 50% for the whole window: a step's first window starts one scrape after the change.
        assert canary.requests > 0.4 * RPS * (obs.end - obs.start).total_seconds()
        assert obs.stale_series == ()


@pytest.mark.prometheus
def test_the_mesh_routes_by_the_routers_current_weights(runs):
    """No canary traffic before the first step nor after a rollback; no baseline traffic after promotion."""
    for name, drained in (("regressed", "canary"), ("healthy", "baseline")):
        run = runs[name]
        first_step = run.tick_times[0]
        kinds = decisions(run)
        decided = run.tick_times[kinds.index("rollback" if drained == "canary" else "promote")]
        before = [s for s in run.mesh.scrapes if s.t < first_step]
        after = [getattr(s, drained).requests for s in run.mesh.scrapes if s.t > decided]
        assert before and all(s.canary.requests == 0 for s in before)
        assert len(after) >= 3 and len(set(after)) == 1, after
        assert getattr(run.mesh.scrapes[-1], drained).requests > 0


@pytest.mark.prometheus
def test_ticks_kept_to_the_wall_clock(runs):
    for run in runs.values():
        gaps = [b - a for a, b in zip(run.tick_times, run.tick_times[1:], strict=False)]
        assert gaps and all(abs(g - INTERVAL_S) < 1.0 for g in gaps), gaps
