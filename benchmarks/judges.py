"""The §10 benchmark: the same simulated rollouts through our gate and every peer method.

    python -m benchmarks.judges [--quick] [--out DIR] [--workers N]

Open loop (false rollbacks, detection, delays): `benchmarks.generate` draws [R, T=60] arrays per cell; our rollback
rule (`benchmarks.ours`, vectorised, equal to `analyzer.judge.judge`) and the peers of `benchmarks.methods` all read
the same arrays. Closed loop (time to promote, false promotion, inconclusive): whole rollouts of the reviews spec
through `analyzer.app.simulation.run_rollout`. Writes results.json, results.md and PNG plots to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from multiprocessing import Pool
from pathlib import Path
from typing import Any

import numpy as np

from analyzer.stats.dispersion import DEFAULT_PRIOR_TAU
from benchmarks import methods as peers
from benchmarks.generate import EDGES, Batch, Cell, gate_edges, generate
from benchmarks.ours import LATENCY_PRIOR_TAU, gate
from benchmarks.tables import summarise_closed, summarise_open, write_outputs

ALPHA = 0.01  # total false-rollback budget, as in config/examples/reviews.yaml
ALPHA_METRIC = ALPHA / 2  # per metric (errors, latency): peers' per-test level and the oracle's level
DEFAULT_OUT = Path(__file__).with_name("results")
METHODS = ("ours", "today", "flagger", "flagger_relative", "kayenta", "peeking", "fixed_horizon", "oracle")


@dataclass(frozen=True)
class ClosedCell:
    """Whole rollouts of the reviews spec on the simulated mesh (our engine only)."""

    name: str
    rps: float
    p_b: float
    theta: float = 1.0
    lat_scale: float = 1.0
    replicates: int = 100
    seed: int = 0
    overdispersion: float = 0.0  # canary-only per-minute noise on the error rate
    pods_c: int = 1
    pods_b: int = 1
    pod_error_sigma: float = 0.0
    pod_latency_sigma: float = 0.0

    @property
    def null(self) -> bool:
        return self.theta == 1.0 and self.lat_scale == 1.0


# ---- cells ----


def _open_cells(quick: bool) -> list[Cell]:
    aa_r, reg_r, aa_k, reg_k = (300, 200, 20, 20) if quick else (4000, 1000, 200, 100)
    cells: list[Cell] = []

    def add(name: str, group: str, **kw: Any) -> None:
        null = kw.get("theta", 1.0) == 1.0 and kw.get("lat_scale", 1.0) == 1.0 and not kw.get("tail_share")
        cells.append(Cell(name, group, replicates=aa_r if null else reg_r, kayenta_replicates=aa_k if null else reg_k,
                          seed=len(cells) + 1, **kw))

    if quick:
        add("A/A rps=100 pB=1%", "errors", rps=100, p_b=1e-2)
        add("errors x2 rps=100 pB=0.1%", "errors", rps=100, p_b=1e-3, theta=2.0)
        add("latency x1.2 rps=100", "latency", rps=100, p_b=1e-3, lat_scale=1.2)
        add("A/A gaps rps=100 pB=0.1%", "robustness", rps=100, p_b=1e-3, gap_share=0.1, gap_block=(20, 28))
        return cells
    for rps in (1, 10, 100, 1000):
        for p_b in (0.0, 1e-4, 1e-3, 1e-2):
            add(f"A/A rps={rps} pB={100 * p_b:g}%", "errors", rps=rps, p_b=p_b)
            if p_b == 0:
                continue
            for theta in (1.25, 1.5, 2.0, 5.0):
                add(f"errors x{theta:g} rps={rps} pB={100 * p_b:g}%", "errors", rps=rps, p_b=p_b, theta=theta)
    for rps in (1, 10, 100, 1000):
        for scale in (1.1, 1.2, 1.5):
            add(f"latency x{scale:g} rps={rps}", "latency", rps=rps, p_b=1e-3, lat_scale=scale)
        add(f"tail 1%+500ms rps={rps}", "latency", rps=rps, p_b=1e-3, tail_share=0.01)
        add(f"within-bucket rps={rps}", "latency", rps=rps, p_b=1e-3, within_bucket=True)
    robust: list[tuple[str, dict[str, Any]]] = [
        ("shocks σ=0.3", {"shock_sigma": 0.3}),
        ("shocks σ=1.0", {"shock_sigma": 1.0}),
        ("weight 50%", {"weights": "50"}),
        ("ramp 10→50%", {"weights": "ramp"}),
        ("warm-up x2/5min", {"warmup_factor": 2.0, "warmup_minutes": 5}),
        ("over-dispersion σ=0.3", {"overdispersion": 0.3}),
        ("counter reset", {"counter_reset": True}),
        ("gaps 10%+8min", {"gap_share": 0.1, "gap_block": (20, 28)}),
        ("onset 10m leak 10m", {"onset": 10, "leak_minutes": 10}),
    ]
    for label, kw in robust:
        add(f"A/A {label}", "robustness", rps=100, p_b=1e-3, **kw)
        add(f"errors x2 {label}", "robustness", rps=100, p_b=1e-3, theta=2.0, **kw)
    cells += noise_cells(aa_r, reg_r, aa_k, reg_k, first_seed=len(cells) + 1)
    return cells


def noise_cells(aa_r: int, reg_r: int, aa_k: int, reg_k: int, first_seed: int) -> list[Cell]:
    """Issue 9: real telemetry. Noise between intervals (canary-only, and per pod with 1 canary pod against 5
    baseline pods), per-pod latency jitter, and a very low baseline rate."""
    cells: list[Cell] = []

    def add(name: str, **kw: Any) -> None:
        null = kw.get("theta", 1.0) == 1.0 and kw.get("lat_scale", 1.0) == 1.0
        cells.append(Cell(name, "noise", replicates=aa_r if null else reg_r, kayenta_replicates=aa_k if null else reg_k,
                          seed=first_seed + len(cells), **kw))

    for rps in (100, 1000):
        for sigma in (0.3, 0.5):
            add(f"A/A canary noise σ={sigma:g} rps={rps} pB=1%", rps=rps, p_b=1e-2, overdispersion=sigma)
            add(f"A/A pod noise σ={sigma:g} 1v5 pods rps={rps} pB=1%", rps=rps, p_b=1e-2, pods_c=1, pods_b=5,
                pod_error_sigma=sigma)
        add(f"errors x2 canary noise σ=0.5 rps={rps} pB=1%", rps=rps, p_b=1e-2, theta=2.0, overdispersion=0.5)
        add(f"A/A latency jitter 3% 1v5 pods rps={rps}", rps=rps, p_b=1e-3, pods_c=1, pods_b=5,
            pod_latency_sigma=0.03)
        add(f"latency x1.2 jitter 3% 1v5 pods rps={rps}", rps=rps, p_b=1e-3, lat_scale=1.2, pods_c=1, pods_b=5,
            pod_latency_sigma=0.03)
    add("A/A rps=100 pB=0.005%", rps=100, p_b=5e-5)
    add("errors x5 rps=100 pB=0.005%", rps=100, p_b=5e-5, theta=5.0)
    return cells


def _closed_cells(quick: bool) -> list[ClosedCell]:
    if quick:
        return [ClosedCell("healthy rps=1000", 1000, 1e-3, replicates=5, seed=1),
                ClosedCell("errors x5 rps=100", 100, 1e-3, theta=5.0, replicates=5, seed=2)]
    cells = [ClosedCell(f"healthy rps={rps}", rps, 1e-3, replicates=40 if rps <= 10 else 150, seed=10 + i)
             for i, rps in enumerate((1, 10, 100, 1000))]
    cells += closed_noise_cells()
    seed = 20
    for rps in (10, 100):
        reps = 40 if rps <= 10 else 100  # low-traffic rollouts cost ~0.7 s each (power Monte Carlo per tick)
        for theta in (1.5, 2.0, 5.0):
            cells.append(ClosedCell(f"errors x{theta:g} rps={rps}", rps, 1e-3, theta=theta, replicates=reps, seed=seed))
            seed += 1
        for scale in (1.2, 1.5):
            cells.append(ClosedCell(f"latency x{scale:g} rps={rps}", rps, 1e-3, lat_scale=scale, replicates=reps,
                                    seed=seed))
            seed += 1
    return cells


def closed_noise_cells(scale: float = 1.0) -> list[ClosedCell]:
    """Issue 9, closed loop: false promotions at ratios 1.5, 2 and 5 against the tolerance 1.5, the very low
    baseline with a 5x regression, and healthy canaries under noise between intervals."""
    r = max(2, int(100 * scale))
    cells = [ClosedCell(f"errors x{theta:g} rps=1000", 1000, 1e-3, theta=theta, replicates=r, seed=40 + i)
             for i, theta in enumerate((1.5, 2.0, 5.0))]
    cells += [
        ClosedCell("errors x5 rps=100 pB=0.005%", 100, 5e-5, theta=5.0, replicates=max(2, int(40 * scale)), seed=44),
        ClosedCell("healthy canary noise σ=0.5 rps=1000 pB=1%", 1000, 1e-2, overdispersion=0.5, replicates=r,
                   seed=45),
        ClosedCell("healthy pod noise σ=0.5 1v5 pods rps=1000 pB=1%", 1000, 1e-2, pods_c=1, pods_b=5,
                   pod_error_sigma=0.5, replicates=r, seed=46),
        ClosedCell("healthy latency jitter 3% 1v5 pods rps=1000", 1000, 1e-3, pods_c=1, pods_b=5,
                   pod_latency_sigma=0.03, replicates=r, seed=47),
    ]
    return cells


# ---- open loop ----


def _oracle(cell: Cell, batch: Batch) -> Callable[[peers.RunData], peers.MethodResult]:
    kind = cell.kind
    if kind == "errors":
        return lambda run: peers.oracle_sprt(run, alpha=ALPHA_METRIC, p_b=cell.p_b, theta=cell.theta)
    return lambda run: peers.oracle_sprt(run, alpha=ALPHA_METRIC, pi_b=batch.pi_b, pi_c=batch.pi_c)


def _peer_methods(cell: Cell, batch: Batch) -> dict[str, Callable[[peers.RunData], peers.MethodResult]]:
    out: dict[str, Callable[[peers.RunData], peers.MethodResult]] = {
        "flagger": peers.flagger,
        "flagger_relative": peers.flagger_relative,
        "kayenta": lambda run: peers.kayenta(run, warmup=max(5, cell.warmup_minutes)),
        "peeking": lambda run: peers.peeking(run, alpha=ALPHA_METRIC),
        "fixed_horizon": lambda run: peers.fixed_horizon(run, alpha=ALPHA_METRIC),
    }
    if not cell.null:
        out["oracle"] = _oracle(cell, batch)
    return out


def _ours(cell: Cell, batch: Batch, chunk: int = 1000, noise: tuple[float, float] = (DEFAULT_PRIOR_TAU,
          LATENCY_PRIOR_TAU)) -> tuple[list[str], np.ndarray]:
    """Our gate; `noise=0` is the test before issue 9 (binomial within each interval), on the same arrays."""
    edges = gate_edges(cell.latency)
    index = [int(np.flatnonzero(e == EDGES)[0]) for e in edges]
    minutes = []
    for lo in range(0, batch.replicates, chunk):
        s = slice(lo, lo + chunk)
        trace = gate(batch.n_c[s], batch.e_c[s], batch.n_b[s], batch.e_b[s], batch.cum_c[s], batch.cum_b[s], index,
                     alpha=ALPHA, warmup=cell.warmup_minutes, has_data=batch.has_data[s], noise=noise)
        minutes.append(trace.rollback_minute)
    m = np.concatenate(minutes)
    return ["rollback" if v > 0 else "continue" for v in m], np.where(m > 0, m, cell.horizon)


def _decisions(cell: Cell, batch: Batch) -> dict[str, tuple[list[str], np.ndarray]]:
    out = {"ours": _ours(cell, batch), "today": _ours(cell, batch, noise=(0.0, 0.0))}
    for name, fn in _peer_methods(cell, batch).items():
        n = cell.kayenta_replicates if name == "kayenta" else batch.replicates
        res = [fn(batch.run(i)) for i in range(min(n, batch.replicates))]
        out[name] = ([r.decision for r in res], np.asarray([r.minute or cell.horizon for r in res]))
    return out


def run_open(cell: Cell) -> dict[str, Any]:
    t0 = time.perf_counter()
    batch = generate(cell)
    decisions = _decisions(cell, batch)
    gap_caused: dict[str, int] = {}
    if batch.ungapped is not None:
        full = _decisions(cell, batch.ungapped)
        for name, (dec, _) in decisions.items():
            dec_full = full[name][0]
            gap_caused[name] = sum(a == "rollback" and b != "rollback" for a, b in zip(dec, dec_full, strict=True))
    methods = {name: summarise_open(dec, minutes, batch, ALPHA) for name, (dec, minutes) in decisions.items()}
    for name, count in gap_caused.items():
        methods[name]["rollbacks_caused_by_gaps"] = count
    info = {k: v for k, v in asdict(cell).items() if k not in ("replicates", "kayenta_replicates")}
    info.update(kind=cell.kind, null=cell.null, gate_edges_ms=gate_edges(cell.latency), replicates=cell.replicates,
                kayenta_replicates=cell.kayenta_replicates)
    return {"loop": "open", "cell": info, "methods": methods, "seconds": round(time.perf_counter() - t0, 2)}


# ---- closed loop ----


def reviews_spec() -> Any:
    """config/examples/reviews.yaml with the (diagnostic, non-gating) trace source off, for speed."""
    import yaml

    from analyzer.config import parse_spec

    path = Path(__file__).resolve().parents[1] / "config" / "examples" / "reviews.yaml"
    data = yaml.safe_load(path.read_text())
    data["sources"]["traces"] = {"type": "none"}
    return parse_spec(data, str(path))


def run_closed(cell: ClosedCell) -> dict[str, Any]:
    from analyzer.app import logs
    from analyzer.app.simulation import run_rollout
    from analyzer.sim.scenario import Latency, Regression, Scenario, Subset, Traffic

    logs.configure("warning", json=True)
    t0 = time.perf_counter()
    spec = reviews_spec()
    latency = Latency(median_ms=50.0, sigma=0.5)
    scenario = Scenario(
        name=cell.name.replace(" ", "-"),
        traffic=Traffic(rps=cell.rps, diurnal=0.5),
        baseline=Subset(error_rate=cell.p_b, latency=latency, pods=cell.pods_b),
        canary=Subset(error_rate=cell.p_b, latency=latency, pods=cell.pods_c),
        regression=Regression(error_ratio=cell.theta, latency_scale=cell.lat_scale),
        overdispersion=cell.overdispersion,
        pod_error_sigma=cell.pod_error_sigma,
        pod_latency_sigma=cell.pod_latency_sigma,
    )
    runs = [run_rollout(spec, scenario, seed=cell.seed * 100_000 + i) for i in range(cell.replicates)]
    summary = summarise_closed(runs, ALPHA, tolerance=1.5, null=cell.null,
                               regressed=cell.theta >= 1.5 or cell.lat_scale >= 1.2)
    return {"loop": "closed", "cell": {**asdict(cell), "null": cell.null}, "ours": summary,
            "seconds": round(time.perf_counter() - t0, 2)}


# ---- driver ----


def _task(task: tuple[str, Cell | ClosedCell]) -> dict[str, Any]:
    kind, cell = task
    return run_open(cell) if kind == "open" and isinstance(cell, Cell) else run_closed(cell)  # type: ignore[arg-type]


def _cost(task: tuple[str, Cell | ClosedCell]) -> float:
    cell = task[1]
    if isinstance(cell, Cell):
        return cell.replicates * 0.002 + cell.kayenta_replicates * 0.06 * (2 if cell.gap_share else 1)
    return cell.replicates * (0.8 if cell.rps <= 10 else 0.1)


def run(quick: bool, out: Path, workers: int, only: str | None = None) -> dict[str, Any]:
    t0 = time.perf_counter()
    tasks: list[tuple[str, Cell | ClosedCell]] = [("open", c) for c in _open_cells(quick)]
    tasks += [("closed", c) for c in _closed_cells(quick)]
    if only == "noise":  # the issue-9 cells alone
        names = {c.name for c in closed_noise_cells()}
        tasks = [t for t in tasks if (isinstance(t[1], Cell) and t[1].group == "noise") or t[1].name in names]
    tasks.sort(key=_cost, reverse=True)
    results: list[dict[str, Any]] = []
    if workers <= 1:
        results = [_task(t) for t in tasks]
    else:
        with Pool(workers) as pool:
            for i, res in enumerate(pool.imap_unordered(_task, tasks), 1):
                results.append(res)
                print(f"[{i}/{len(tasks)}] {res['cell']['name']} ({res['seconds']} s)", file=sys.stderr, flush=True)
    rank = {("open", c.name): i for i, c in enumerate(_open_cells(quick))}
    rank.update({("closed", c.name): i for i, c in enumerate(_closed_cells(quick))})
    results.sort(key=lambda r: (r["loop"] != "open", rank[(r["loop"], r["cell"]["name"])]))
    doc = {
        "mode": "quick" if quick else "full",
        "alpha": ALPHA,
        "alpha_per_metric": ALPHA_METRIC,
        "horizon_minutes": 60,
        "workers": workers,
        "only": only,
        "wall_seconds": round(time.perf_counter() - t0, 1),
        "results": results,
    }
    write_outputs(doc, out)
    return doc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.judges", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few small cells (CI smoke test, < 60 s)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--only", choices=["noise"], help="run only these cells (noise: the issue-9 cells)")
    args = parser.parse_args(argv)
    doc = run(args.quick, args.out, max(1, min(2, args.workers)), args.only)
    print(json.dumps({"mode": doc["mode"], "wall_seconds": doc["wall_seconds"], "out": str(args.out)}))
    return 0


__all__ = ["ClosedCell", "main", "run", "run_closed", "run_open"]

if __name__ == "__main__":
    raise SystemExit(main())
