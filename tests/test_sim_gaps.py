"""Per-subset scrape gaps in the closed-loop simulator (issue 9 §3): the benchmark-style regression case.

A canary-only scrape gap over a shared incident, A/A at 1000 rps. The mesh answers as Prometheus
would: a window whose end a side has no scrape for is a gap for both, and a window reaching back
over the gap holds both sides' increments over the same span.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from analyzer.app.simulation import run_rollout
from analyzer.config import parse_spec
from analyzer.engine import Engine
from analyzer.judge import OUTAGE_KEY
from analyzer.model import Verdict
from analyzer.sim.scenario import Scenario

ROOT = Path(__file__).resolve().parents[1]
# The example rollout (header phase, then 10/25/50%) without simulated traces, which are slow at 1000 rps.
SPEC = parse_spec({**yaml.safe_load((ROOT / "config/examples/reviews.yaml").read_text()),
                   "sources": {"metrics": {"type": "simulated"}}})
RUNS = 20


def scenario() -> Scenario:
    return Scenario.model_validate({
        "name": "canary-gap-over-incident",
        "traffic": {"rps": 1000},
        "baseline": {"error_rate": 0.01},
        "outages": [{"start": "8m", "end": "10m", "error_rate": 0.2}],
        "gaps": [{"start": "7.5m", "end": "10.5m", "subset": "canary"}],
    })


def outcomes(runs: int) -> list:
    ticks: dict[int, list] = {}

    def record(seed: int):
        def on_tick(engine: Engine, outcome) -> None:
            ticks.setdefault(seed, []).append(outcome)
        return on_tick

    results = [run_rollout(SPEC, scenario(), seed=s, on_tick=record(s)) for s in range(runs)]
    return [(r, ticks[s]) for s, r in enumerate(results)]


def test_canary_only_gap_over_a_shared_incident_never_rolls_back_and_the_outage_guard_runs():
    for result, ticks in outcomes(RUNS):
        assert result.outcome != "rolled_back", result.reason
        gaps = [o for o in ticks if o.observation is not None and o.observation.gap is not None]
        assert gaps and all(o.observation.gap.subset == "canary" for o in gaps)
        after = ticks[ticks.index(gaps[-1]) + 1:]
        ended = next(o for o in after if o.observation is not None and o.observation.has_data)
        # The tick that ends the gap reads back to the last common edge, over the incident: a shared outage.
        assert ended.observation.start == gaps[0].observation.start
        assert ended.observation.end - ended.observation.start >= timedelta(minutes=3)
        assert any(v.metric == OUTAGE_KEY and v.verdict is Verdict.HALT for v in ended.verdicts)
        assert result.outcome == "paused"


def test_control_with_windows_that_never_reach_back_the_incident_is_missed(monkeypatch: pytest.MonkeyPatch):
    """Without resuming from the last common edge the gap's increments are dropped and the guard never runs."""

    def one_interval(self, state, now):
        end = now - timedelta(seconds=self.lag)
        return end - timedelta(seconds=self.spec.timing.interval), end

    monkeypatch.setattr(Engine, "_window", one_interval)
    paused = sum(result.outcome == "paused" for result, _ in outcomes(5))
    assert paused == 0
