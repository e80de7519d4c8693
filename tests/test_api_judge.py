"""POST /v1/judge against a real Prometheus: the same JSON as `canary-analyzer judge --json`."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

from analyzer.app.cli import main
from tests.daemon_support import OPERATE, READ, app_for, make_env, service
from tests.judge_support import INTERVAL, PROMETHEUS, judge_spec
from tests.test_judge_cli import HEALTHY, METRICS, backfilled, rfc3339  # noqa: F401

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

pytest_plugins = ["tests.servers_prometheus"]


@pytest.mark.prometheus
@pytest.mark.parametrize("regressed", [False, True])
def test_judge_endpoint_answers_what_the_cli_prints(backfilled, tmp_path: Path, capsys, regressed):  # noqa: F811
    start, _, prom = backfilled
    t0 = start + (HEALTHY * INTERVAL if regressed else 0)
    t1 = t0 + HEALTHY * INTERVAL
    spec_file = tmp_path / "reviews.yaml"
    spec_file.write_text(judge_spec(METRICS, PROMETHEUS))
    capsys.readouterr()
    rc = main(["judge", str(spec_file), "--start", rfc3339(t0), "--end", f"{t1:.0f}", "--prometheus-url", prom.url,
               "--json"])
    cli = json.loads(capsys.readouterr().out)
    env = make_env(tmp_path / "svc")
    with TestClient(app_for(service(env, sim=False, daemon=False, prometheus_url=prom.url))) as c:
        body = {"specYaml": judge_spec(METRICS, PROMETHEUS), "start": rfc3339(t0), "end": f"{t1:.0f}"}
        r = c.post("/v1/judge", json=body, headers=READ)
    assert r.status_code == 200, r.text
    assert r.json() == cli
    assert (rc, cli["verdict"]) == ((1, "fail") if regressed else (0, "pass"))


def test_judge_endpoint_names_bad_windows_and_unreachable_servers(tmp_path: Path):
    env = make_env(tmp_path)
    spec = judge_spec(METRICS, '{type: prometheus, url: "http://127.0.0.1:9", timeout: 1s, retries: 0}')
    with TestClient(app_for(service(env, sim=False, daemon=False))) as c:
        r = c.post("/v1/judge", json={"specYaml": spec, "start": "yesterday", "end": "60"}, headers=OPERATE)
        assert r.status_code == 400 and "'yesterday'" in r.json()["error"]
        r = c.post("/v1/judge", json={"specYaml": spec, "start": "120", "end": "60"}, headers=READ)
        assert r.status_code == 400 and "not after start" in r.json()["error"]
        r = c.post("/v1/judge", json={"specYaml": spec, "start": "0", "end": "600"}, headers=READ)
        assert r.status_code == 424 and "cannot connect to Prometheus" in r.json()["error"]
