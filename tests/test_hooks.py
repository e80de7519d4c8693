"""Flagger-compatible gate hooks against local receivers: payloads and each hook type's semantics."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from analyzer.app import wiring
from analyzer.config import Hook, load_spec
from analyzer.engine import Engine
from analyzer.model import Phase
from analyzer.sim.scenario import load_scenario
from tests.fakes.http_receiver import Receiver

ROOT = Path(__file__).resolve().parents[1]
SPEC = load_spec(ROOT / "config" / "examples" / "reviews.yaml")


def _run(hooks: list[Hook], scenario: str = "healthy", seed: int = 1) -> tuple[Engine, list, wiring.SimulatedRig]:
    spec = SPEC.model_copy(update={"hooks": hooks})
    rig = wiring.simulated(spec, load_scenario(scenario), seed=seed)
    engine = Engine(spec, "r-hooks", rig.adapters, seed=seed)
    engine.start()
    outcomes = []
    for _ in range(80):
        if engine.done:
            break
        rig.clock.advance(60)
        outcomes.append(engine.tick())
    wiring.close(rig.adapters)
    return engine, outcomes, rig


def test_confirm_promotion_holds_without_using_the_budget_until_approved() -> None:
    gate = Receiver([403] * 12)  # an approval service that says no twelve times, then yes
    try:
        engine, outcomes, _ = _run([Hook(name="approve", type="confirm-promotion", url=gate.url)])
        assert engine.state.phase is Phase.SUCCEEDED
        waiting = [o for o in outcomes if o.decision.reason.startswith("waiting: hook 'approve'")]
        assert len(waiting) == 12 and "HTTP 403" in waiting[0].decision.reason
        assert all(o.state.weights["v2"] == 50 for o in waiting)  # held at the last partial step
        assert engine.state.confirm_wait_s == 12 * 60
        body = gate.bodies[0]
        assert body["name"] == "reviews" and body["namespace"] == "bookinfo" and body["phase"] == "Progressing"
        assert len(body["checksum"]) == 16 and body["metadata"] == {}
    finally:
        gate.close()


def test_confirm_traffic_increase_is_asked_before_every_step() -> None:
    gate = Receiver([500])  # refuses once
    try:
        engine, outcomes, _ = _run([Hook(name="steps", type="confirm-traffic-increase", url=gate.url)])
        assert engine.state.phase is Phase.SUCCEEDED
        steps = [o.state.weights["v2"] for o in outcomes if o.decision.kind == "advance"]
        assert steps[-3:] == [10, 25, 50] and len(gate.bodies) == 4  # 3 steps, one of them asked twice
    finally:
        gate.close()


def test_a_failing_pre_rollout_hook_stops_before_any_traffic_moves() -> None:
    gate = Receiver([500] * 5)
    try:
        engine, outcomes, rig = _run([Hook(name="smoke", type="pre-rollout", url=gate.url)])
        assert engine.state.phase is Phase.FAILED and "stopped before any traffic moved" in engine.state.reason
        assert rig.router.get_weights(SPEC) == {"v1": 100, "v2": 0} and rig.router.header_route(SPEC) is None
        assert len(outcomes) == 1 and rig.router.writes <= 2
    finally:
        gate.close()


def test_rollout_hooks_roll_back_past_their_failure_limit_with_the_answer() -> None:
    tester = Receiver([200, 502, 200, 502, 502])  # an acceptance test that starts failing
    try:
        engine, _, _ = _run([Hook(name="acceptance", type="rollout", url=tester.url, failureLimit=3,
                                  metadata={"cmd": "hey -z 1m http://reviews"})])
        assert engine.state.phase is Phase.ROLLED_BACK
        assert "rollout hooks failed 3 times (limit 3)" in engine.state.reason and "HTTP 502" in engine.state.reason
        assert tester.bodies[0]["metadata"] == {"cmd": "hey -z 1m http://reviews"}
    finally:
        tester.close()


def test_a_rollback_hook_that_answers_2xx_rolls_back_now() -> None:
    button = Receiver([404, 404, 404, 200])  # the "roll back" button is pressed on the fourth ask
    try:
        engine, _, _ = _run([Hook(name="button", type="rollback", url=button.url)])
        assert engine.state.phase is Phase.ROLLED_BACK and "requested by hook 'button'" in engine.state.reason
        assert len(button.bodies) == 4
    finally:
        button.close()


def test_a_hung_hook_times_out_and_counts_as_a_failure() -> None:
    hung = Receiver(delay_s=3.0)
    try:
        engine, _, _ = _run([Hook(name="slow", type="rollout", url=hung.url, timeout=0.2, failureLimit=2)])
        assert engine.state.phase is Phase.ROLLED_BACK and "no answer: ReadTimeout" in engine.state.reason
    finally:
        hung.close()


def test_hooks_from_the_spec_through_the_demo_command(tmp_path: Path) -> None:
    """post-rollout hears the outcome; event hooks get Flagger's event payload; results land in the history."""
    post, events = Receiver(), Receiver()
    try:
        data = yaml.safe_load((ROOT / "config" / "examples" / "reviews.yaml").read_text())
        data["hooks"] = [{"name": "done", "type": "post-rollout", "url": post.url},
                         {"name": "feed", "type": "event", "url": events.url}]
        spec = tmp_path / "spec.yaml"
        spec.write_text(yaml.safe_dump(data))
        db = f"sqlite:///{tmp_path / 'h.db'}"
        run = subprocess.run([sys.executable, "-m", "analyzer.app.cli", "demo", "--config", str(spec), "--scenario",
                              "error-regression", "--json", "--db", db], capture_output=True, text=True, timeout=120,
                             cwd=ROOT)
        assert run.returncode == 0, run.stderr
        rid = json.loads(run.stdout)["rollout"]
        assert [b["phase"] for b in post.bodies] == ["Failed"]
        kinds = [(b["phase"], b["metadata"]["eventType"]) for b in events.bodies]
        assert ("advanced", "Normal") in kinds and ("rollback", "Warning") in kinds
        assert all(b["metadata"]["eventMessage"] and b["metadata"]["timestamp"].isdigit() for b in events.bodies)
        show = subprocess.run([sys.executable, "-m", "analyzer.app.cli", "history", "show", rid, "--db", db, "--json"],
                              capture_output=True, text=True, timeout=60, cwd=ROOT)
        hook_events = [e for e in json.loads(show.stdout)["events"] if e["kind"] == "hook"]
        assert hook_events and "hook 'done' (post-rollout): HTTP 200" in hook_events[0]["message"]
    finally:
        post.close()
        events.close()
