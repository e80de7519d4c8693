"""Route drift on the simulated path (MemoryRouter): a third party's edit pauses by default, `onDrift: correct`
restores our weights, and a failed write of our own is simply retried."""

from __future__ import annotations

from analyzer.config import parse_spec
from analyzer.engine import Engine
from analyzer.model import Command, Event, Phase
from analyzer.notify.log import LogNotifier
from analyzer.ports import Adapters
from analyzer.sim.clock import EPOCH, VirtualClock
from analyzer.sim.mesh import SimulatedMesh
from analyzer.sim.scenario import load_scenario
from analyzer.store.null import NullStore
from analyzer.traffic.memory import MemoryRouter
from analyzer.workloads.memory import MemoryScaler
from tests.kube_cluster import spec_data


def _progressing(on_drift: str) -> tuple[Engine, MemoryRouter, VirtualClock, LogNotifier]:
    spec = parse_spec(spec_data(**{"target.onDrift": on_drift}))
    clock, router, notifier = VirtualClock(), MemoryRouter(), LogNotifier()
    mesh = SimulatedMesh(load_scenario("healthy"), router, seed=1, start=EPOCH)
    engine = Engine(spec, "r1", Adapters(metrics=mesh, router=router, scaler=MemoryScaler(), notifier=notifier,
                                         store=NullStore(), clock=clock), seed=1)
    engine.start()
    while engine.state.phase is not Phase.PROGRESSING:
        clock.advance(60)
        engine.tick()
    clock.advance(60)
    engine.tick()
    return engine, router, clock, notifier


def test_a_third_party_edit_pauses_and_says_who_and_what() -> None:
    engine, router, clock, notifier = _progressing("pause")
    ours = dict(engine.state.weights)
    router.edit_by("kubectl-edit", engine.spec, {"v1": 100, "v2": 0})
    clock.advance(60)
    out = engine.tick()
    assert out.state.phase is Phase.PAUSED and out.decision.kind == "pause"
    assert "kubectl-edit" in out.state.reason and "{'v1': 100, 'v2': 0}" in out.state.reason
    assert str(ours) in out.state.reason
    assert router.get_weights(engine.spec) == {"v1": 100, "v2": 0}  # not fought over
    assert notifier.sent[-1][0] is Event.DRIFT
    assert router.status["bookinfo/reviews/"]["phase"] == "Paused"
    # The operator resumes: our weights are re-applied and the rollout goes on.
    clock.advance(60)
    resumed = engine.tick(Command.RESUME)
    assert resumed.state.phase is Phase.PROGRESSING and router.get_weights(engine.spec) == ours


def test_on_drift_correct_restores_our_weights() -> None:
    engine, router, clock, _ = _progressing("correct")
    ours = dict(engine.state.weights)
    router.edit_by("kubectl-edit", engine.spec, {"v1": 100, "v2": 0})
    clock.advance(60)
    out = engine.tick()
    assert out.state.phase is Phase.PROGRESSING
    assert router.get_weights(engine.spec) == dict(out.state.weights)
    assert dict(out.state.weights) == ours or out.state.step > 0


def test_our_own_failed_write_is_retried_not_taken_for_drift() -> None:
    engine, router, clock, _ = _progressing("pause")
    ours = dict(engine.state.weights)
    router._weights["bookinfo/reviews/"] = {"v1": 100, "v2": 0}  # as if our last write had not landed
    router._ours["bookinfo/reviews/"] = {"v1": 100, "v2": 0}
    clock.advance(60)
    out = engine.tick()
    assert out.state.phase is Phase.PROGRESSING
    assert router.get_weights(engine.spec) == dict(out.state.weights)
    assert dict(out.state.weights) == ours or out.state.step > 0


def test_a_restart_does_not_overwrite_an_edit_made_while_down() -> None:
    engine, router, clock, _ = _progressing("pause")
    state = engine.state
    router.edit_by("kubectl-edit", engine.spec, {"v1": 100, "v2": 0})  # while the analyzer was down
    resumed = Engine.resume(engine.spec, state, engine.adapters)
    assert router.get_weights(engine.spec) == {"v1": 100, "v2": 0}
    clock.advance(60)
    out = resumed.tick()
    assert out.state.phase is Phase.PAUSED and "kubectl-edit" in out.state.reason
