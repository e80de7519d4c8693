"""A whole rollout on the simulated mesh with its traces read from the fake Jaeger query service over HTTP.

The mesh's simulated traces are published to the fake Jaeger (without subsets, which the client must find
again) instead of being handed to the engine in-process; the findings must be the same. The findings are
then read back from the history store (`history show`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pytest

from analyzer.app import wiring
from analyzer.app.cli import main
from analyzer.app.simulation import run_rollout
from analyzer.config import NoTraces, RolloutSpec, load_spec
from analyzer.engine import Engine
from analyzer.model import Span
from analyzer.sim.scenario import load_scenario
from analyzer.sim.traces import SimulatedTraceSource
from analyzer.sources.jaeger.source import JaegerTraceSource
from analyzer.store.sql import SqlStore
from analyzer.traces import Finding, findings_in
from tests.fakes.jaeger_server import FakeJaeger, serve_jaeger

ROOT = Path(__file__).resolve().parents[1]
SEED = 3


class _PublishToJaeger:
    """The mesh's trace sink: simulate the interval's traces, then publish them to the fake Jaeger."""

    def __init__(self, simulator: SimulatedTraceSource, fake: FakeJaeger) -> None:
        self.simulator, self.fake = simulator, fake

    def record(self, start: datetime, end: datetime, requests_by_subset: Mapping[str, int]) -> list[Span]:
        spans = self.simulator.record(start, end, requests_by_subset)
        self.fake.spans.extend(replace(s, subset=None) for s in spans)
        return spans


def _spec(jaeger_url: str) -> RolloutSpec:
    spec = load_spec(ROOT / "config" / "examples" / "reviews.yaml")
    return wiring.with_overrides(spec, wiring.Settings(jaeger_url=jaeger_url))


def _through_jaeger(scenario_name: str, db: str) -> tuple[str, str, list[Finding]]:
    """(rollout id, outcome, findings) of one rollout whose engine reads traces from the fake Jaeger."""
    scenario = load_scenario(scenario_name)
    with serve_jaeger(FakeJaeger(version="v2.19")) as fake, SqlStore(db) as store:
        spec = _spec(fake.url)
        rig = wiring.simulated(spec, scenario, seed=SEED, store=store)
        assert isinstance(rig.mesh.trace_sink, SimulatedTraceSource)
        rig.mesh.trace_sink = _PublishToJaeger(rig.mesh.trace_sink, fake)
        traces = wiring.trace_source(spec)
        assert isinstance(traces, JaegerTraceSource)
        rollout_id = f"jaeger-{scenario_name}"
        store.create_rollout(rollout_id, spec, "", {"mode": "simulated", "traces": "jaeger"})
        engine = Engine(spec, rollout_id, replace(rig.adapters, traces=traces), seed=SEED)
        engine.start()
        while not engine.done:
            rig.clock.advance(spec.timing.interval)
            engine.tick()
        report = engine.trace_report()
        assert report is not None
        searches = [p for path, p in fake.requests if path == "/api/v3/traces"]
        assert searches and all("query.attributes" in p for p in searches)
        return rollout_id, engine.state.phase.value, list(report.findings)


def _key(findings: Sequence[Finding]) -> set[tuple[str, str]]:
    return {(f.kind.value, f.label) for f in findings}


@pytest.mark.parametrize(("scenario", "expected"), [
    ("trace-slow-operation", ("slower", "GET reviews:9080/* -> ratings")),
])
def test_a_rollout_reading_jaeger_finds_what_the_in_process_simulator_finds(tmp_path, capsys, scenario, expected):
    spec = load_spec(ROOT / "config" / "examples" / "reviews.yaml")
    direct = run_rollout(spec, load_scenario(scenario), seed=SEED)
    direct_findings = findings_in(direct.metrics)
    assert expected in _key(direct_findings)

    db = f"sqlite:///{tmp_path / 'history.db'}"
    rollout_id, phase, findings = _through_jaeger(scenario, db)
    assert phase == "Succeeded" and direct.outcome == "promoted"  # traces explain; they did not gate
    assert _key(findings) == _key(direct_findings)
    by_key = {(f.kind.value, f.label): f for f in direct_findings}
    for f in findings:  # the same traces, bar a few at the interval edges
        assert f.effect == pytest.approx(by_key[(f.kind.value, f.label)].effect, rel=0.05)

    # The engine kept its findings with the rollout's last tick: `history show` reads them back.
    capsys.readouterr()
    assert main(["history", "show", rollout_id, "--db", db, "--json"]) == 0
    stored = json.loads(capsys.readouterr().out)["traces"]
    assert {(f["kind"], f["operation"]) for f in stored["findings"]} == _key(findings)
    assert stored["canary_traces"] > 100 and stored["baseline_traces"] > stored["canary_traces"]
    assert main(["history", "show", rollout_id, "--db", db]) == 0
    text = capsys.readouterr().out
    assert "Trace findings" in text and f"[{expected[0]}] " in text


def test_live_wiring_gives_run_and_serve_the_jaeger_source():
    spec = load_spec(ROOT / "config" / "examples" / "reviews.yaml")
    spec = wiring.with_overrides(spec, wiring.Settings(prometheus_url="http://prometheus.test:9090",
                                                       jaeger_url="http://jaeger.test:16686"))
    adapters = wiring.live(spec, store=wiring.open_store(None))
    assert isinstance(adapters.traces, JaegerTraceSource)
    assert adapters.traces.config.url == "http://jaeger.test:16686"
    no_traces = spec.model_copy(update={"sources": spec.sources.model_copy(update={"traces": NoTraces()})})
    assert wiring.live(no_traces, store=wiring.open_store(None)).traces is None
