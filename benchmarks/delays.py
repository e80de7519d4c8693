"""Issue 9: detection delays of the gate against the test before it (binomial within each interval), same arrays.

    python -m benchmarks.delays [--replicates N] [--out FILE]

The cells are the open-loop binomial regression cells of `benchmarks.judges` (errors ×2 and ×5, latency ×1.2);
only our gate runs, twice: with the default noise bounds and with `intervalNoise: 0` (the test before issue 9).
A third column is the fastest valid test (`benchmarks.bound`): the first minute at which the Neyman–Pearson power
against the issue's noise cell reaches 50%, a lower bound on the median delay of any test valid under that noise.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.bound import fastest_valid_minute
from benchmarks.generate import Cell, generate
from benchmarks.judges import ALPHA_METRIC, _ours

BOUND_REPLICATES = 4000  # the error cells' bound is cheap: more replicates keep its Monte Carlo error small


def cells(replicates: int) -> list[Cell]:
    out = []
    for rps in (1, 10, 100, 1000):
        for p_b in (1e-4, 1e-3, 1e-2):
            for theta in (2.0, 5.0):
                out.append(Cell(f"errors x{theta:g} rps={rps} pB={100 * p_b:g}%", "errors", rps=rps, p_b=p_b,
                                theta=theta, replicates=replicates, seed=len(out) + 1))
        out.append(Cell(f"latency x1.2 rps={rps}", "latency", rps=rps, p_b=1e-3, lat_scale=1.2,
                        replicates=replicates, seed=len(out) + 1))
    return out


def run(replicates: int) -> list[dict[str, Any]]:
    rows = []
    for cell in cells(replicates):
        batch = generate(cell)
        row: dict[str, Any] = {"cell": cell.name}
        for name, noise in (("ours", None), ("before", (0.0, 0.0))):
            dec, minutes = _ours(cell, batch) if noise is None else _ours(cell, batch, noise=noise)
            hit = np.asarray(dec) == "rollback"
            row[name] = {"detection": float(hit.mean()),
                         "p50": float(np.median(minutes[hit])) if hit.any() else None}
        o, b = row["ours"], row["before"]
        reliable = o["detection"] >= 0.5 and b["detection"] >= 0.5 and o["p50"] and b["p50"]
        row["ratio"] = o["p50"] / b["p50"] if reliable else None
        # Latency likelihoods are costly (bucket counts × a fine grid): those cells reuse the delay batch.
        bound_batch = batch if cell.kind == "latency" else generate(cell, replicates=max(replicates, BOUND_REPLICATES))
        minute, power = fastest_valid_minute(cell, bound_batch, ALPHA_METRIC)
        row["bound"] = {"p50": minute, "power": [round(float(v), 4) for v in power[:10]],
                        "replicates": bound_batch.replicates}
        row["target"] = 1.5 * b["p50"] if b["detection"] >= 0.5 and b["p50"] else None
        rows.append(row)
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| cell | ours detect % / p50 min | before #9 detect % / p50 min | ours ÷ before "
             "| fastest valid test, p50 min | 1.5× before |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        o, b = r["ours"], r["before"]
        ratio = "—" if r["ratio"] is None else f"{r['ratio']:.2f}"
        lines.append(f"| {r['cell']} | {100 * o['detection']:.0f}% / {o['p50'] or '—'} | "
                     f"{100 * b['detection']:.0f}% / {b['p50'] or '—'} | {ratio} | {r['bound']['p50'] or '—'} | "
                     f"{_feasible(r)} |")
    return "\n".join(lines)


def _feasible(row: dict[str, Any]) -> str:
    """Is 1.5× the old median reachable by a valid test? (— where the old test detects < 50%.)"""
    target, bound = row["target"], row["bound"]["p50"]
    if target is None:
        return "—"
    if bound is None or bound > target:
        return f"{target:g}: infeasible"
    met = row["ours"]["p50"] is not None and row["ours"]["p50"] <= target
    return f"{target:g}: {'met' if met else 'missed'}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.delays", description=__doc__.split("\n")[0])
    parser.add_argument("--replicates", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("results") / "issue9" / "delays.md")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    rows = run(args.replicates)
    args.out.write_text(f"# Delays: the gate vs the test before issue 9 ({args.replicates} replicates per cell, "
                        f"{time.perf_counter() - t0:.0f} s)\n\n" + markdown(rows) + "\n")
    args.out.with_suffix(".json").write_text(json.dumps(rows, indent=1))
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
