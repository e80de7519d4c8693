"""The §10 benchmark: the vectorised gate equals the real judge, and the quick run works end to end."""

import json
import math
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from analyzer.judge import JudgeContext, initial_evidence, judge
from analyzer.model import ISTIO_DEFAULT_EDGES_MS, Observation, SubsetCounts
from benchmarks.generate import EDGES, Batch, Cell, gate_edges, generate
from benchmarks.judges import reviews_spec
from benchmarks.ours import gate

ROOT = Path(__file__).resolve().parents[1]
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _observation(b: Batch, i: int, t: int) -> Observation:
    start = T0 + timedelta(minutes=t)
    end = start + timedelta(minutes=1)
    if not b.has_data[i, t]:
        return Observation(start, end, None, None, ISTIO_DEFAULT_EDGES_MS)
    c = SubsetCounts(int(b.n_c[i, t]), int(b.e_c[i, t]), tuple(int(v) for v in b.cum_c[i, t]))
    base = SubsetCounts(int(b.n_b[i, t]), int(b.e_b[i, t]), tuple(int(v) for v in b.cum_b[i, t]))
    return Observation(start, end, base, c, ISTIO_DEFAULT_EDGES_MS)


@pytest.mark.parametrize(
    "cell",
    [
        Cell("reg", "t", rps=20, p_b=1e-2, theta=2.0, lat_scale=1.2, gap_share=0.15, horizon=25, seed=3),
        Cell("aa-low", "t", rps=2, p_b=1e-2, weights="ramp", gap_share=0.1, horizon=25, seed=4),
        Cell("reset", "t", rps=50, p_b=5e-3, theta=1.5, counter_reset=True, horizon=25, seed=5),
        # Enough traffic above 250 ms for the 100 ms edge's tail slope to be read (its prior then follows it).
        Cell("tail", "t", rps=300, p_b=1e-3, lat_scale=1.2, horizon=8, seed=6),
    ],
    ids=lambda c: c.name,
)
def test_vectorised_gate_equals_judge_tick_by_tick(cell: Cell) -> None:
    spec = reviews_spec()
    lat = next(m for m in spec.analysis.metrics if m.name == "latency")
    assert gate_edges(cell.latency) == lat.gate_edges  # the pre-registered edges are the spec's [100, 250]
    index = [list(EDGES).index(e) for e in lat.gate_edges]
    b = generate(cell, replicates=4)
    trace = gate(b.n_c, b.e_c, b.n_b, b.e_b, b.cum_c, b.cum_b, index, alpha=spec.analysis.alpha,
                 has_data=b.has_data)
    crossed = False
    for i in range(b.replicates):
        evidence = initial_evidence(spec)
        first = -1
        for t in range(cell.horizon):
            evidence, verdicts = judge(spec, evidence, _observation(b, i, t), JudgeContext())
            by = {v.metric: v for v in verdicts}
            if not b.has_data[i, t]:
                assert by["errors"].verdict.value == "no-data" or by["errors"].e_value is None
                if t:  # silence leaves the vectorised evidence unchanged too
                    assert trace.log_e_errors[i, t] == trace.log_e_errors[i, t - 1]
                    assert trace.log_e_latency[i, t] == trace.log_e_latency[i, t - 1]
                continue
            err, lat_v = by["errors"], by["latency"]
            assert err.e_value is not None and lat_v.e_value is not None
            assert math.log(err.e_value) == pytest.approx(trace.log_e_errors[i, t], rel=1e-9, abs=1e-9)
            assert math.log(lat_v.e_value) == pytest.approx(trace.log_e_latency[i, t], rel=1e-9, abs=1e-9)
            if first < 0 and any(v.verdict.value == "fail" for v in (err, lat_v)):
                first = t
        assert first == trace.rollback_tick[i]
        crossed |= first >= 0
    if cell.name == "reg":
        assert crossed  # the comparison covered a rollback decision too


def test_counter_reset_path_loses_only_the_restart_minute() -> None:
    cell = Cell("reset", "t", rps=50, p_b=1e-2, counter_reset=True, horizon=40, seed=9)
    b = generate(cell, replicates=50)
    # Ingested canary requests never exceed what was served, and differ in at most one minute per run.
    assert (b.n_c <= b.served_c).all()
    assert ((b.n_c != b.served_c).sum(axis=1) <= 1).all()
    assert (b.e_c <= b.n_c).all()


def test_quick_run_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "results"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.judges", "--quick", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads((out / "results.json").read_text())
    md = (out / "results.md").read_text()
    assert "A/A false-rollback rate" in md and "closed loop" in md
    for png in ("delay_vs_effect.png", "aa_false_rollbacks.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    opened = {r["cell"]["name"]: r for r in doc["results"] if r["loop"] == "open"}
    assert all(set(r["methods"]) >= {"ours", "flagger", "flagger_relative", "kayenta", "peeking", "fixed_horizon"}
               for r in opened.values())

    # The statistical claim: in A/A, our false-rollback rate is consistent with α, naive peeking's is not.
    alpha = doc["alpha"]
    aa = opened["A/A rps=100 pB=1%"]["methods"]
    assert aa["ours"]["rollback"]["ci95"][0] <= alpha
    assert aa["ours"]["rollback"]["rate"] <= 2 * alpha
    assert aa["peeking"]["rollback"]["ci95"][0] > alpha
    # Telemetry gaps never cause our rollback.
    assert opened["A/A gaps rps=100 pB=0.1%"]["methods"]["ours"]["rollbacks_caused_by_gaps"] == 0


def test_closed_form_before_issue_9_equals_the_update_with_no_noise_bound() -> None:
    from benchmarks.ours import ratio_log_e

    b = generate(Cell("aa", "t", rps=50, p_b=1e-2, gap_share=0.1, horizon=20, seed=8), replicates=5)
    active = b.has_data & (b.n_c > 0)
    fast = ratio_log_e(b.n_c, b.e_c, b.n_b, b.e_b, active, noise=0.0)
    slow = ratio_log_e(b.n_c, b.e_c, b.n_b, b.e_b, active, noise=1e-300)  # the tempered loop, φ̂ = 1 to 1e-600
    assert fast == pytest.approx(slow, rel=1e-9, abs=1e-9)


def test_per_pod_cells_are_overdispersed_and_the_gate_holds() -> None:
    """The issue-9 generator: 1 canary pod against 5 baseline pods, σ 0.5 per pod and minute, at 1000 rps."""
    cell = Cell("pods", "noise", rps=1000, p_b=1e-2, pods_c=1, pods_b=5, pod_error_sigma=0.5, horizon=30, seed=9)
    b = generate(cell, replicates=200)
    share = b.e_c / np.maximum(b.e_c + b.e_b, 1)
    rho = b.n_c / (b.n_c + b.n_b)
    binomial = (rho * (1 - rho) / np.maximum(b.e_c + b.e_b, 1)).mean()
    assert ((share - rho) ** 2).mean() > 5 * binomial
    assert b.e_c.sum() / b.n_c.sum() == pytest.approx(0.01, rel=0.1)
    index = [list(EDGES).index(e) for e in gate_edges(cell.latency)]
    ours = gate(b.n_c, b.e_c, b.n_b, b.e_b, b.cum_c, b.cum_b, index)
    before = gate(b.n_c, b.e_c, b.n_b, b.e_b, b.cum_c, b.cum_b, index, noise=(0.0, 0.0))
    alpha = 0.01  # the gate's default
    assert (ours.rollback_tick >= 0).mean() <= alpha + 3 * math.sqrt(alpha * (1 - alpha) / 200)
    assert (before.rollback_tick >= 0).mean() >= 0.2  # the defect, on the same data


def test_daemon_benchmark_end_to_end(tmp_path: Path) -> None:
    """`python -m benchmarks.daemon` at a small scale: a real `serve --sim` ticks every rollout and reports."""
    out = tmp_path / "results"
    subprocess.run([sys.executable, "-m", "benchmarks.daemon", "--rollouts", "8", "--rounds", "2", "--sim-speed", "30",
                    "--out", str(out)], check=True, capture_output=True, timeout=300)
    result = json.loads((out / "daemon_8.json").read_text())
    assert result["rollouts"] == 8 and result["rounds_measured"] == 2
    assert result["ticks_lost"] == 0 and result["tick_errors"] == 0 and result["serve_exit_code"] == 0
    assert 0 < result["cpu_ms_per_tick"] < 1000 and 50 < result["peak_rss_mb"] < 300
