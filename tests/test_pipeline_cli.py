"""The pipeline CLI: `rollout ...` against a real HTTP server, `run` without one, tables in CI logs."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from analyzer.app.cli import main
from tests.daemon_support import REVIEWS, Env, app_for, make_env, service


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def env(tmp_path: Path) -> Env:
    return make_env(tmp_path)


@pytest.fixture
def server(env: Env) -> Iterator[str]:
    """`serve --sim` in this process: uvicorn on a loopback port, the daemon ticking 600x real time."""
    port = _free_port()
    config = uvicorn.Config(app_for(service(env)), host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=30)


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


def test_rollout_start_wait_exits_0_when_promoted_and_1_when_rolled_back(server, env, capsys):
    common = ["--server", server, "--token-file", str(env.token_file)]
    rc, out, err = cli(capsys, "rollout", "start", "reviews", "--scenario", "healthy", "--seed", "1", "--wait",
                       *common)
    assert rc == 0, err
    lines = out.splitlines()
    rollout_id = lines[0]
    # Not a terminal: plain progress lines (the rollout takes ~2 s at 600x), then the outcome.
    progress = [x for x in lines if x.startswith(f"{rollout_id}  tick ")]
    assert len(progress) >= 2 and "Succeeded" in progress[-1] and lines[-1].startswith(f"{rollout_id}: promoted")
    rc, out, _ = cli(capsys, "rollout", "start", "ratings", "--scenario", "error-regression", "--seed", "2",
                     "--wait", *common)
    assert rc == 1 and "rolled_back" in out.splitlines()[-1]
    bad_id = out.splitlines()[0]
    assert cli(capsys, "rollout", "status", rollout_id, *common)[0] == 0
    rc, out, _ = cli(capsys, "rollout", "status", bad_id, *common)
    assert rc == 1 and "fail" in out


def test_rollout_pause_resume_abort_through_the_api(server, env, capsys):
    common = ["--server", server, "--token-file", str(env.token_file)]
    rc, out, _ = cli(capsys, "rollout", "start", "reviews", "--scenario", "healthy", "--seed", "4", *common)
    rollout_id = out.strip()
    assert rc == 0
    time.sleep(0.5)
    assert cli(capsys, "rollout", "pause", rollout_id, *common)[0] == 0
    rc, out, _ = cli(capsys, "rollout", "wait", rollout_id, "--timeout", "20", *common)
    assert rc == 3 and "paused" in out.splitlines()[-1]
    assert cli(capsys, "rollout", "resume", rollout_id, *common)[0] == 0
    assert cli(capsys, "rollout", "abort", rollout_id, *common)[0] == 0
    rc, out, _ = cli(capsys, "rollout", "wait", rollout_id, "--timeout", "20", *common)
    assert rc == 1 and "aborted" in out.splitlines()[-1]
    rc, _, err = cli(capsys, "rollout", "promote", rollout_id, *common)
    assert rc == 2 and "HTTP 409" in err and "already finished" in err


def test_rollout_client_errors_exit_2_with_one_line(server, env, tmp_path, capsys):
    wrong = tmp_path / "wrong"
    wrong.write_text("operate not-the-right-token-000000\n")
    rc, _, err = cli(capsys, "rollout", "status", "x", "--server", server, "--token-file", str(wrong))
    assert rc == 2 and "HTTP 401" in err and "not-the-right-token" not in err
    rc, _, err = cli(capsys, "rollout", "status", "x", "--server", "http://127.0.0.1:9", "--token-file",
                     str(env.token_file))
    assert rc == 2 and "cannot reach" in err


def test_run_without_a_server_holds_on_missing_data_and_exits_3(tmp_path, capsys):
    spec = tmp_path / "spec.yaml"
    # Prometheus is unreachable: every interval holds; at the budget the rollout is inconclusive (paused).
    spec.write_text(REVIEWS.read_text().replace("interval: 1m", "interval: 1s").replace("budget: 60m", "budget: 6s")
                    .replace("minDuration: 3m", "minDuration: 1s")
                    .replace("metrics: {type: simulated}",
                             'metrics: {type: prometheus, url: "http://127.0.0.1:9", timeout: 1s, retries: 0, '
                             'scrapeInterval: 1s}')
                    .replace("traces: {type: simulated}", "traces: {type: none}"))
    db = f"sqlite:///{tmp_path / 'run.db'}"
    rc, out, err = cli(capsys, "run", str(spec), "--db", db)
    assert rc == 3, err
    assert "inconclusive" in out and "tick   0" in out
    rollout_id = out.splitlines()[0].split(":")[0]
    rc, out, _ = cli(capsys, "history", "show", rollout_id, "--db", db, "--json")
    shown = json.loads(out)
    assert rc == 0 and shown["summary"]["outcome"] == "inconclusive", shown["summary"]
    assert any(e["kind"] == "source-unavailable" for e in shown["events"]), shown["events"]


def test_tables_in_a_pipe_are_not_wrapped_at_80_columns(tmp_path, capsys):
    db = f"sqlite:///{tmp_path / 'demo.db'}"
    assert cli(capsys, "demo", "--db", db, "--json")[0] == 0
    rc, out, _ = cli(capsys, "history", "list", "--db", db)
    assert rc == 0
    row = next(x for x in out.splitlines() if "reviews-healthy-1" in x)
    assert len(row) > 80 and "promoted" in row  # the whole id, its label and its outcome on one line
