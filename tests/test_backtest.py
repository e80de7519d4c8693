"""Backtest: the stored ticks replay the judge and the policy exactly, and another config changes decisions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from analyzer.app.cli.main import main
from analyzer.app.simulation import run_rollout
from analyzer.config import load_spec, parse_spec
from analyzer.sim.scenario import load_scenario
from analyzer.store import codec
from analyzer.store.backtest import backtest, backtest_frame, recorded_ticks
from analyzer.store.history import _engine
from analyzer.store.sql import SqlStore

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "config/examples/reviews.yaml"
SCENARIOS = ("healthy", "error-regression", "latency-regression", "low-traffic", "telemetry-gap",
             "traffic-split-mismatch")


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('bt') / 'history.db'}"
    spec = load_spec(SPEC)
    store = SqlStore(url)
    for i, name in enumerate(SCENARIOS):
        run_rollout(spec, load_scenario(name), seed=11 + i, store=store, rollout_id=f"r-{name}",
                    spec_text=SPEC.read_text())
    store.close()
    return url


def _json(v: object) -> str:
    return json.dumps(v, sort_keys=True, default=str)


def test_own_config_reproduces_every_verdict_and_decision(fleet: str) -> None:
    run = backtest(fleet)
    assert not run.skipped
    assert {r.rollout_id for r in run.results} == {f"r-{n}" for n in SCENARIOS}
    with _engine(fleet) as engine, engine.connect() as conn:
        for result in run.results:
            recorded = recorded_ticks(conn, result.rollout_id, 0.0)
            assert len(result.ticks) == len(recorded), result.rollout_id
            for rec, new in zip(recorded, result.ticks, strict=True):
                where = f"{result.rollout_id} tick {rec.tick}"
                assert new.decision == rec.decision, where
                assert new.reason == rec.reason, where
                assert _json(codec.encode_state(new.state)) == _json(codec.encode_state(rec.state)), where
                assert [_json(codec.encode_verdict(v)) for v in new.verdicts] == [
                    _json(codec.encode_verdict(v)) for v in rec.verdicts], where
            assert result.difference is None and not result.changed
            assert result.new_minute == result.recorded_minute
    outcomes = {r.rollout_id: r.recorded_outcome for r in run.results}
    assert outcomes["r-healthy"] == "promoted" and outcomes["r-error-regression"] == "rolled_back"
    assert run.totals.changed == 0 and run.totals.false_rollback_rate == 0.0


def test_a_stricter_config_changes_decisions_and_says_where(fleet: str, tmp_path: Path) -> None:
    data = yaml.safe_load(SPEC.read_text())
    data["analysis"]["alpha"] = 1e-6  # a rollback threshold of 10^6: no recorded regression reaches it
    strict = parse_spec(data)
    run = backtest(fleet, strict)
    by_id = {r.rollout_id: r for r in run.results}
    for r in run.results:
        if r.changed or r.new_minute != r.recorded_minute:
            assert r.difference is not None, r.rollout_id
    errors = by_id["r-error-regression"]
    assert errors.recorded_outcome == "rolled_back" and errors.new_outcome != "rolled_back"
    d = errors.difference
    assert d is not None and d.recorded == "rollback" and d.new != "rollback"
    assert "regression" in d.recorded_reason and d.new_reason.startswith("continue")
    at = next(t for t in errors.ticks if t.tick == d.tick)
    assert min(v.threshold for v in at.verdicts if v.gate and v.threshold) >= 1e6  # the new threshold applied
    assert run.totals.rolled_back_to_promoted + run.totals.undecided >= 1
    frame = backtest_frame(fleet, strict)
    assert list(frame["rollout_id"]) == [r.rollout_id for r in run.results]
    assert frame.attrs["totals"]["rollouts"] == len(SCENARIOS)
    assert frame.set_index("rollout_id").loc["r-error-regression", "recorded_decision"] == "rollback"


def test_cli_backtest_json_and_table(fleet: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = yaml.safe_load(SPEC.read_text())
    data["analysis"]["alpha"] = 0.005
    config = tmp_path / "strict.yaml"
    config.write_text(yaml.safe_dump(data))
    assert main(["backtest", "--db", fleet, "--all", "--config", str(config), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["rollouts"]) == len(SCENARIOS)
    assert {"promoted_to_rolled_back", "rolled_back_to_promoted", "median_change_minutes",
            "false_rollback_rate"} <= set(out["totals"])
    assert main(["backtest", "--db", fleet, "--rollout", "r-healthy", "--config", str(config)]) == 0
    text = capsys.readouterr().out
    assert "r-healthy" in text and "promoted" in text


def test_cli_backtest_errors_are_one_line(fleet: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["backtest", "--db", fleet, "--rollout", "nope", "--config", str(SPEC)]) == 2
    assert "nope" in capsys.readouterr().err
    assert main(["backtest", "--db", fleet, "--config", str(SPEC)]) == 2
    assert "--all" in capsys.readouterr().err
    assert main(["backtest", "--db", fleet, "--all", "--since", "yesterday", "--config", str(SPEC)]) == 2
    assert "--since" in capsys.readouterr().err


def test_a_fleet_change_applies_to_each_recorded_config_and_a_config_only_to_its_target(fleet: str) -> None:
    from analyzer.backtest import with_analysis

    strict = backtest(fleet, lambda spec: with_analysis(spec, alpha=1e-6))
    assert len(strict.results) == len(SCENARIOS) and not strict.skipped
    assert any(r.difference is not None for r in strict.results)
    other = load_spec(SPEC).model_copy(update={"metadata": load_spec(SPEC).metadata.model_copy(
        update={"name": "ratings"})})
    run = backtest(fleet, other)
    assert not run.results and len(run.skipped) == len(SCENARIOS)
    assert "'ratings'" in run.skipped[0].why
    with pytest.raises(ValueError, match="colour"):
        with_analysis(load_spec(SPEC), colour=1.0)


@pytest.mark.parametrize("hooks, statuses, marker", [
    ([{"name": "approve", "type": "confirm-promotion"}], [403] * 4, "waiting: hook 'approve'"),
    ([{"name": "steps", "type": "confirm-traffic-increase"}], [500, 500], "waiting: hook 'steps'"),
    ([{"name": "acceptance", "type": "rollout", "failureLimit": 3}], [200, 502, 200, 502, 502],
     "rollout hooks failed 3 times"),
    ([{"name": "button", "type": "rollback"}], [404, 404, 404, 200], "requested by hook 'button'"),
    ([{"name": "smoke", "type": "pre-rollout"}], [500], "stopped before any traffic moved"),
], ids=["confirm-promotion", "confirm-traffic-increase", "rollout", "rollback", "pre-rollout"])
def test_gate_hook_answers_replay_exactly(hooks: list[dict], statuses: list[int], marker: str,
                                          tmp_path: Path) -> None:
    """Hooks are the environment, like operator commands: their recorded answers are replayed."""
    from analyzer.config import Hook
    from tests.fakes.http_receiver import Receiver

    receiver = Receiver(statuses)
    try:
        spec = load_spec(SPEC)
        spec = spec.model_copy(update={"hooks": [Hook(url=receiver.url, **h) for h in hooks]})
        url = f"sqlite:///{tmp_path / 'hooks.db'}"
        with SqlStore(url) as store:
            run_rollout(spec, load_scenario("healthy"), seed=2, store=store, rollout_id="r-hooks")
    finally:
        receiver.close()
    run = backtest(url)
    (replayed,) = run.results
    assert replayed.difference is None and replayed.recorded_outcome == replayed.new_outcome
    with _engine(url) as engine, engine.connect() as conn:
        recorded = recorded_ticks(conn, "r-hooks", 0.0)
    assert any(marker in t.reason for t in recorded)  # the hook did act on the recorded rollout
    assert [(t.decision, t.reason) for t in replayed.ticks] == [(t.decision, t.reason) for t in recorded]
    assert [_json(codec.encode_state(t.state)) for t in replayed.ticks] == [
        _json(codec.encode_state(t.state)) for t in recorded]


def test_route_drift_pauses_and_operator_commands_replay_exactly(tmp_path: Path) -> None:
    """A third party's route edit paused the rollout and an operator resumed it: both are replayed."""
    from analyzer.app import wiring
    from analyzer.engine import Engine
    from analyzer.model import Command, Phase

    url = f"sqlite:///{tmp_path / 'drift.db'}"
    spec = load_spec(SPEC)
    store = SqlStore(url)
    rig = wiring.simulated(spec, load_scenario("healthy"), seed=3, store=store)
    store.create_rollout("r-drift", spec, "", {"seed": 3})
    engine = Engine(spec, "r-drift", rig.adapters, seed=3)
    engine.start()
    edited = resumed = False
    for _ in range(80):
        command = None
        if engine.state.phase is Phase.PAUSED and not resumed:
            command, resumed = Command.RESUME, True
        elif engine.done:
            break
        rig.clock.advance(60)
        if engine.state.phase is Phase.PROGRESSING and not edited:
            rig.router.edit_by("kubectl-edit", spec, {"v1": 100, "v2": 0})
            edited = True
        engine.tick(command)
    store.close()
    assert edited and resumed and engine.state.phase is Phase.SUCCEEDED
    (replayed,) = backtest(url).results
    with _engine(url) as db, db.connect() as conn:
        recorded = recorded_ticks(conn, "r-drift", 0.0)
    assert any(t.decision == "pause" and "kubectl-edit" in t.reason for t in recorded)
    assert any(t.decision == "resume" for t in recorded)
    assert [(t.decision, t.reason) for t in replayed.ticks] == [(t.decision, t.reason) for t in recorded]
    assert [_json(codec.encode_state(t.state)) for t in replayed.ticks] == [
        _json(codec.encode_state(t.state)) for t in recorded]
    assert replayed.difference is None and replayed.new_outcome == "promoted"
