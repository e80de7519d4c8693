"""Judge computation time per metric per tick (target ≤ 1 ms), measured with timeit on the real code.

    python -m benchmarks.timing [--json PATH]

* `analyzer.judge.judge` on one tick of the reviews spec (errors + latency at two edges, plus the SRM check),
  with 30 ticks of evidence already accumulated; once in an ordinary tick and once at the last partial step
  (`assess_promotion=True`, which adds the non-inferiority and power checks);
* `RatioEvidence.update` + `summary` alone (one e-process, one tick).
"""

from __future__ import annotations

import argparse
import json
import timeit
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from analyzer.judge import JudgeContext, initial_evidence, judge
from analyzer.model import ISTIO_DEFAULT_EDGES_MS, Observation, SubsetCounts
from analyzer.stats.rate_ratio import RatioEvidence
from benchmarks.generate import Cell, generate
from benchmarks.judges import reviews_spec

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def observations(ticks: int = 31, seed: int = 7) -> list[Observation]:
    b = generate(Cell("timing", "timing", rps=100, p_b=1e-3, horizon=ticks), replicates=1, seed=seed)
    out = []
    for t in range(ticks):
        c = SubsetCounts(int(b.n_c[0, t]), int(b.e_c[0, t]), tuple(int(v) for v in b.cum_c[0, t]))
        base = SubsetCounts(int(b.n_b[0, t]), int(b.e_b[0, t]), tuple(int(v) for v in b.cum_b[0, t]))
        start = T0 + timedelta(minutes=t)
        out.append(Observation(start, start + timedelta(minutes=1), base, c, ISTIO_DEFAULT_EDGES_MS))
    return out


def _best_us(fn: Any, number: int, repeat: int = 5) -> float:
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number * 1e6


def measure(number: int = 200) -> dict[str, Any]:
    spec = reviews_spec()
    gate_metrics = len(spec.analysis.metrics)
    obs = observations()
    evidence: dict[str, Any] = initial_evidence(spec)
    for o in obs[:-1]:
        evidence, _ = judge(spec, evidence, o, JudgeContext(expected_share=0.1))
    last = obs[-1]
    plain = JudgeContext(expected_share=0.1)
    promo = JudgeContext(expected_share=0.5, assess_promotion=True)
    tick_us = _best_us(lambda: judge(spec, evidence, last, plain), number)
    promo_us = _best_us(lambda: judge(spec, evidence, last, promo), max(10, number // 10))
    ev = RatioEvidence(1.5)
    for o in obs[:-1]:
        assert o.canary and o.baseline
        ev = ev.update(o.canary.requests, o.canary.errors, o.baseline.requests, o.baseline.errors)
    c, b = last.canary, last.baseline
    assert c and b
    ratio_us = _best_us(lambda: ev.update(c.requests, c.errors, b.requests, b.errors).summary(0.01), number * 5)
    return {
        "gate_metrics": gate_metrics,
        "judge_tick_us": round(tick_us, 1),
        "judge_us_per_metric_per_tick": round(tick_us / gate_metrics, 1),
        "judge_promotion_tick_us": round(promo_us, 1),
        "judge_promotion_us_per_metric_per_tick": round(promo_us / gate_metrics, 1),
        "ratio_update_summary_us": round(ratio_us, 1),
        "target_us_per_metric_per_tick": 1000.0,
        "numpy": np.__version__,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.timing", description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this file")
    parser.add_argument("--number", type=int, default=200)
    args = parser.parse_args(argv)
    res = measure(args.number)
    text = json.dumps(res, indent=1)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
