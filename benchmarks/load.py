"""Closed loop with synthetic load: a 5 rps service, plus the load `plan` recommends.

    python -m benchmarks.load [--runs N] [--out DIR]

Targets (issue 11): healthy rollouts promote within the budget in at least 90% of runs, and A/A false
rollbacks stay at or below α. A 2x error regression is run too, to show the load also catches it.
Writes load.json and load.md to --out.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from analyzer.app import logs
from analyzer.app.simulation import run_rollout
from analyzer.config import Load
from analyzer.plan import make_plan
from analyzer.sim.scenario import Latency, Regression, Scenario, Subset, Traffic
from analyzer.stats.fixed import clopper_pearson
from benchmarks.judges import DEFAULT_OUT, reviews_spec

RPS, P_B = 5.0, 0.005


def _scenario(name: str, error_ratio: float) -> Scenario:
    return Scenario(name=name, traffic=Traffic(rps=RPS), regression=Regression(error_ratio=error_ratio),
                    baseline=Subset(error_rate=P_B, latency=Latency(median_ms=80.0, sigma=0.5)))


def _row(name: str, spec: Any, scenario: Scenario, runs: int, seed: int) -> dict[str, Any]:
    results = [run_rollout(spec, scenario, seed=seed + i) for i in range(runs)]
    counts: dict[str, int] = {}
    for r in results:
        counts[r.outcome] = counts.get(r.outcome, 0) + 1
    minutes = sorted(r.decision_minute for r in results if r.decision_minute is not None)

    def share(outcome: str) -> dict[str, float]:
        k = counts.get(outcome, 0)
        ci = clopper_pearson(k, runs)
        return {"rate": k / runs, "ci": [round(ci.low, 4), round(ci.high, 4)]}

    return {"row": name, "runs": runs, "outcomes": counts, "promoted": share("promoted"),
            "rolled_back": share("rolled_back"), "median_minute": minutes[len(minutes) // 2] if minutes else None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    logs.configure("warning", json=True)
    began = time.perf_counter()
    spec = reviews_spec()
    advice = make_plan(spec, rps=RPS, baseline_error_rate=P_B, latency_p99_ms=250.0).load
    assert advice is not None and advice.add_rps
    loaded = spec.model_copy(update={"load": Load(rps=advice.add_rps)})
    rows = [
        _row("A/A, no load", spec, _scenario("aa", 1.0), args.runs, 1_000),
        _row(f"A/A, plan's load {advice.add_rps:g} rps", loaded, _scenario("aa", 1.0), args.runs, 2_000),
        _row(f"errors x2, plan's load {advice.add_rps:g} rps", loaded, _scenario("x2", 2.0), args.runs, 3_000),
    ]
    alpha = spec.analysis.alpha
    report = {"rps": RPS, "baseline_error_rate": P_B, "alpha": alpha, "load": advice.to_json(), "rows": rows,
              "targets": {"healthy_promoted_at_least": 0.9, "aa_false_rollbacks_at_most": alpha},
              "met": rows[1]["promoted"]["rate"] >= 0.9 and rows[1]["rolled_back"]["rate"] <= alpha,
              "seconds": round(time.perf_counter() - began, 1)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "load.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [f"# Closed loop with synthetic load ({RPS:g} rps of real traffic, {100 * P_B:g}% errors)", "",
             f"`plan` recommends {advice.add_rps:g} rps of load (binding: {advice.binding}).", "",
             "| row | runs | promoted (95% CI) | rolled back (95% CI) | median decision minute |",
             "|---|---|---|---|---|"]
    for r in rows:
        p, b = r["promoted"], r["rolled_back"]
        lines.append(f"| {r['row']} | {r['runs']} | {100 * p['rate']:.1f}% ({100 * p['ci'][0]:.1f}–"
                     f"{100 * p['ci'][1]:.1f}) | {100 * b['rate']:.1f}% ({100 * b['ci'][0]:.1f}–{100 * b['ci'][1]:.1f})"
                     f" | {r['median_minute']} |")
    lines += ["", f"Targets met: {report['met']} (healthy with load promoted >= 90%, A/A false rollbacks <= "
              f"{100 * alpha:g}%). {report['seconds']} s."]
    (args.out / "load.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
