"""The CLI end to end: demo --json, simulate --json, plan, and the history it records."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from analyzer.app.cli import main

ROOT = Path(__file__).resolve().parents[1]
CONFIG = str(ROOT / "config/examples/reviews.yaml")


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "analyzer.app.cli", *args], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)


def test_demo_json_end_to_end_and_history(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'h.db'}"
    proc = cli("demo", "--json", "--scenario", "error-regression", "--seed", "3", "--db", db)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["outcome"] == "rolled_back"
    assert out["final_weights"] == {"v1": 100, "v2": 0}
    assert 0 < out["decision_minute"] < 15
    errors = next(m for m in out["metrics"] if m["name"] == "errors")
    assert errors["verdict"] == "fail" and errors["evidence"] >= errors["threshold"]
    assert {"steps_reached", "reason", "metrics"} <= out.keys()

    listing = cli("history", "list", "--db", db, "--json")
    rows = json.loads(listing.stdout)
    assert [r["id"] for r in rows] == [out["rollout"]] and rows[0]["outcome"] == "rolled_back"
    show = cli("history", "show", out["rollout"], "--db", db, "--json")
    detail = json.loads(show.stdout)
    assert detail["timeline"][-1]["phase"] == "RolledBack"
    assert any(e["kind"] == "rollback" for e in detail["events"])
    assert any(v["name"] == "errors" and v["verdict"] == "fail" for v in detail["final_verdicts"])


def test_demo_healthy_is_promoted(tmp_path: Path) -> None:
    proc = cli("demo", "--json", "--db", f"sqlite:///{tmp_path / 'h.db'}")
    out = json.loads(proc.stdout)
    assert out["outcome"] == "promoted" and out["final_weights"] == {"v1": 0, "v2": 100}
    assert out["steps_reached"] == [10, 25, 50, 100]
    latency = next(m for m in out["metrics"] if m["name"] == "latency")
    for edge in latency["details"]["edges"].values():  # exceedance ratio and its confidence sequence per edge
        assert edge["ci"][0] <= edge["ratio"] <= edge["ci"][1]
    for side in ("canary", "baseline"):
        p99 = latency["details"]["quantiles_ms"][side]["p99"]
        assert p99["low"] <= p99["estimate"] <= p99["high"]


def test_demo_live_output_shows_progress_and_summary(tmp_path: Path) -> None:
    proc = cli("demo", "--scenario", "trace-new-call", "--db", f"sqlite:///{tmp_path / 'h.db'}")
    assert proc.returncode == 0, proc.stderr
    assert "HeaderTesting" in proc.stdout and "Progressing" in proc.stdout
    assert "Outcome: promoted" in proc.stdout
    assert "new downstream call in canary: mysql" in proc.stdout


def test_simulate_json_counts_outcomes() -> None:
    proc = cli("simulate", "--config", CONFIG, "--scenario", "error-regression", "--runs", "20", "--seed", "1",
               "--json")
    out = json.loads(proc.stdout)
    assert out["runs"] == 20 and sum(out["outcomes"].values()) == 20
    assert out["outcomes"]["rolled_back"] >= 19
    assert out["decision_minutes"]["p50"] is not None


def test_plan_says_what_fits_the_budget(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", CONFIG, "--rps", "50", "--baseline-error-rate", "0.005", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    errors = {d["ratio"]: d for d in out["detections"] if d["metric"] == "errors"}
    assert errors[5.0]["fits_budget"] and errors[5.0]["minutes"] < errors[2.0]["minutes"]
    low = main(["plan", CONFIG, "--rps", "1", "--baseline-error-rate", "0.001", "--json"])
    assert low == 0
    slow = {d["ratio"]: d for d in json.loads(capsys.readouterr().out)["detections"] if d["metric"] == "errors"}
    assert not slow[1.2]["fits_budget"]


def test_unknown_scenario_and_history_id_are_clear_errors(tmp_path: Path) -> None:
    proc = cli("demo", "--scenario", "nope", "--db", f"sqlite:///{tmp_path / 'h.db'}")
    assert proc.returncode == 2 and "'nope' is not a built-in scenario" in proc.stderr
    assert "Traceback" not in proc.stderr
    db = f"sqlite:///{tmp_path / 'missing.db'}"
    proc = cli("history", "list", "--db", db)
    assert proc.returncode == 2 and "no history store" in proc.stderr
    cli("demo", "--json", "--scenario", "error-regression", "--db", f"sqlite:///{tmp_path / 'h.db'}")
    proc = cli("history", "show", "no-such-id", "--db", f"sqlite:///{tmp_path / 'h.db'}")
    assert proc.returncode == 2 and "no-such-id" in proc.stderr and "Traceback" not in proc.stderr
