"""The HTTP API through the ASGI app, with the daemon ticking simulated rollouts sped up 600 times."""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from analyzer.app.api import Service
from analyzer.app.cli import main
from tests.daemon_support import OPERATE, OPERATE_TOKEN, READ, READ_TOKEN, REVIEWS, Env, app_for, make_env, service

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient


@pytest.fixture
def env(tmp_path: Path) -> Env:
    return make_env(tmp_path)


@pytest.fixture
def svc(env: Env) -> Service:
    return service(env)


@pytest.fixture
def client(svc: Service) -> Iterator[TestClient]:
    with TestClient(app_for(svc)) as c:
        yield c


def start(client: TestClient, **body: object) -> dict:
    r = client.post("/v1/rollouts", json={"spec": "reviews", **body}, headers=OPERATE)
    assert r.status_code == 201, r.text
    return r.json()


def wait(client: TestClient, rollout_id: str, timeout: float = 60) -> dict:
    r = client.get(f"/v1/rollouts/{rollout_id}/wait", params={"timeout": timeout}, headers=READ)
    assert r.status_code == 200, r.text
    return r.json()


def wait_for(client: TestClient, rollout_id: str, phase: str, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.get(f"/v1/rollouts/{rollout_id}", headers=READ).json()
        if body["phase"] == phase:
            return body
        time.sleep(0.05)
    raise AssertionError(f"{rollout_id} never reached {phase}: {body['phase']}")


# ---- security ----

PROTECTED = [
    ("get", "/v1/rollouts", None),
    ("get", "/v1/rollouts/x", None),
    ("get", "/v1/rollouts/x/wait", None),
    ("post", "/v1/rollouts", {"spec": "reviews"}),
    ("post", "/v1/rollouts/x/pause", None),
    ("post", "/v1/judge", {"spec": "reviews", "start": "0", "end": "60"}),
    ("post", "/v1/hooks/flagger", {"name": "reviews", "namespace": "bookinfo"}),
]


@pytest.mark.parametrize(("method", "path", "body"), PROTECTED)
def test_every_endpoint_but_health_and_metrics_needs_a_bearer_token(client, method, path, body):
    for headers in ({}, {"Authorization": "Basic dXNlcjpwYXNz"}, {"Authorization": "Bearer not-a-valid-token-at-all"}):
        r = getattr(client, method)(path, json=body, headers=headers) if body else getattr(client, method)(
            path, headers=headers)
        assert r.status_code == 401, (headers, r.text)
        assert "error" in r.json() and r.headers["www-authenticate"] == "Bearer"


def test_a_read_token_cannot_operate(client):
    r = client.post("/v1/rollouts", json={"spec": "reviews"}, headers=READ)
    assert r.status_code == 403 and "'operate' scope" in r.json()["error"]
    rollout = start(client)
    r = client.post(f"/v1/rollouts/{rollout['id']}/abort", headers=READ)
    assert r.status_code == 403
    assert client.get(f"/v1/rollouts/{rollout['id']}", headers=READ).status_code == 200


def test_health_ready_and_metrics_need_no_token(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["store"] == "ok"
    assert ready.json()["role"] in ("leader", "follower")
    assert client.get("/metrics").status_code == 200


def test_no_token_reaches_a_log_line(env, capsys):
    from analyzer.app import logs

    logs.configure("debug", json=True)
    try:
        with TestClient(app_for(service(env))) as c:
            rollout = start(c, scenario="healthy", seed=1)
            wait(c, rollout["id"])
            c.get("/v1/rollouts", headers={"Authorization": "Bearer wrong-token-0000000000000000"})
            c.post(f"/v1/rollouts/{rollout['id']}/pause", headers=READ)
    finally:
        logs.configure("warning", json=True)
    err = capsys.readouterr().err
    assert '"request"' in err and "rollout_scheduled" in err  # the logs were captured
    for secret in (OPERATE_TOKEN, READ_TOKEN, "wrong-token-0000000000000000"):
        assert secret not in err


def test_token_file_lines_are_checked_without_echoing_the_token(tmp_path):
    from analyzer.app.settings import SettingsError, load_tokens

    bad = tmp_path / "tokens"
    bad.write_text("admin supersecret-value-0123456789\n")
    with pytest.raises(SettingsError, match="line 1") as exc:
        load_tokens(bad)
    assert "supersecret" not in str(exc.value)


# ---- rollouts ----


def test_a_healthy_rollout_promotes_and_a_regression_rolls_back(client, env):
    healthy = start(client, scenario="healthy", seed=1)
    assert healthy["phase"] in ("Pending", "Initializing") and healthy["outcome"] is None
    bad = client.post("/v1/rollouts", json={"spec": "ratings", "scenario": "error-regression", "seed": 2},
                      headers=OPERATE).json()
    done = wait(client, healthy["id"])
    assert (done["phase"], done["outcome"], done["weights"]) == ("Succeeded", "promoted", {"v1": 0, "v2": 100})
    errors = next(v for v in done["final_verdicts"] if v["name"] == "errors")
    assert errors["verdict"] == "pass" and errors["reason"].startswith("errors:")
    assert errors["evidence"] < errors["threshold"] and errors["ci"][0] < errors["ratio"] < errors["ci"][1]
    failed = wait(client, bad["id"])
    assert failed["outcome"] == "rolled_back" and failed["weights"]["v2"] == 0
    assert any(v["verdict"] == "fail" for v in failed["final_verdicts"])
    # The status uses the field names of `history show --json`.
    rc = main(["history", "show", done["id"], "--db", env.db, "--json"])
    assert rc == 0


def test_status_field_names_match_history_show_json(client, env, capsys):
    rollout = start(client, scenario="healthy", seed=3)
    done = wait(client, rollout["id"])
    capsys.readouterr()
    assert main(["history", "show", rollout["id"], "--db", env.db, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert set(shown["summary"]) <= set(done)
    for key in ("id", "phase", "outcome", "ticks", "steps_reached", "max_canary_weight"):
        assert done[key] == shown["summary"][key], key
    assert [v["name"] for v in done["final_verdicts"]] == [v["name"] for v in shown["final_verdicts"]]
    assert set(shown["final_verdicts"][0]) == set(done["final_verdicts"][0])
    assert done["tick"] == shown["timeline"][-1]["tick"] and done["weights"] == shown["timeline"][-1]["weights"]


def test_idempotency_key_returns_the_first_rollout(client):
    headers = {**OPERATE, "Idempotency-Key": "pipeline-run-42"}
    first = client.post("/v1/rollouts", json={"spec": "reviews"}, headers=headers)
    again = client.post("/v1/rollouts", json={"spec": "reviews"}, headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.json()["id"] == again.json()["id"]
    listed = client.get("/v1/rollouts", headers=READ).json()["rollouts"]
    assert [r["id"] for r in listed] == [first.json()["id"]]


def test_a_second_rollout_on_the_same_virtual_service_is_refused(client):
    first = start(client)
    r = client.post("/v1/rollouts", json={"specYaml": REVIEWS.read_text()}, headers=OPERATE)
    assert r.status_code == 409 and first["id"] in r.json()["error"] and "bookinfo/reviews" in r.json()["error"]
    # Another VirtualService is fine.
    assert client.post("/v1/rollouts", json={"spec": "ratings"}, headers=OPERATE).status_code == 201


def test_list_filters_by_phase_name_and_namespace(client):
    a = start(client, scenario="healthy", seed=1)
    b = client.post("/v1/rollouts", json={"spec": "ratings", "scenario": "error-regression", "seed": 2},
                    headers=OPERATE).json()
    wait(client, a["id"])
    wait(client, b["id"])

    def ids(**params: str) -> set[str]:
        r = client.get("/v1/rollouts", params=params, headers=READ)
        assert r.status_code == 200, r.text
        return {x["id"] for x in r.json()["rollouts"]}

    assert ids() == {a["id"], b["id"]}
    assert ids(phase="Succeeded") == {a["id"]} and ids(phase="RolledBack") == {b["id"]}
    assert ids(name="ratings") == {b["id"]} and ids(namespace="bookinfo") == {a["id"], b["id"]}
    assert ids(namespace="other") == set()
    assert client.get("/v1/rollouts", params={"phase": "Sideways"}, headers=READ).status_code == 422


def test_operator_commands_pause_resume_and_abort(client):
    rollout = start(client, scenario="healthy", seed=4)
    rid = rollout["id"]
    wait_for(client, rid, "Progressing")
    r = client.post(f"/v1/rollouts/{rid}/pause", headers=OPERATE)
    assert r.status_code == 202 and r.json()["command"] == "pause"
    paused = wait_for(client, rid, "Paused")
    assert paused["decision"] == "pause"
    time.sleep(0.5)  # five intervals: a paused rollout does not tick
    assert client.get(f"/v1/rollouts/{rid}", headers=READ).json()["tick"] == paused["tick"]
    assert client.post(f"/v1/rollouts/{rid}/resume", headers=OPERATE).status_code == 202
    resumed = wait_for(client, rid, "Progressing")
    assert resumed["decision"] in ("resume", "continue", "advance")
    assert client.post(f"/v1/rollouts/{rid}/abort", headers=OPERATE).status_code == 202
    done = wait(client, rid)
    assert done["phase"] == "Aborted" and done["weights"]["v2"] == 0
    r = client.post(f"/v1/rollouts/{rid}/promote", headers=OPERATE)
    assert r.status_code == 409 and "already finished" in r.json()["error"]


def test_wait_returns_at_the_timeout_with_the_current_status(client):
    rollout = start(client)
    t = time.monotonic()
    body = wait(client, rollout["id"], timeout=0.3)
    assert time.monotonic() - t < 5 and body["outcome"] is None


# ---- validation ----


@pytest.mark.parametrize(("body", "status", "words"), [
    ({}, 400, "exactly one of spec"),
    ({"spec": "reviews", "specYaml": "x: 1"}, 400, "exactly one of spec"),
    ({"spec": "nope"}, 404, "no spec named 'nope'"),
    ({"spec": "../tokens"}, 400, "not a DNS-1123 name"),
    ({"specYaml": "a: [1"}, 400, "not valid YAML"),
    ({"specYaml": REVIEWS.read_text().replace("namespace: bookinfo", "namespace: Book_Info")}, 400,
     "target.namespace"),
    ({"specYaml": REVIEWS.read_text().replace("{subset: v2,", "{subset: V2,")}, 400, "target.canary.subset: 'V2'"),
    ({"specYaml": REVIEWS.read_text().replace("steps: [10, 25, 50, 100]", "steps: [10, 250]")}, 400,
     "strategy.steps"),
    ({"spec": "reviews", "scenario": "../../etc/passwd"}, 400, "not a built-in scenario"),
    ({"spec": "reviews", "seed": -1}, 422, "seed"),
    ({"spec": "reviews", "colour": "blue"}, 422, "colour"),
])
def test_bad_requests_get_a_4xx_naming_the_problem(client, body, status, words):
    r = client.post("/v1/rollouts", json=body, headers=OPERATE)
    assert r.status_code == status, r.text
    assert words in r.json()["error"]


def test_unknown_rollouts_commands_and_bodies(client):
    assert client.get("/v1/rollouts/nope", headers=READ).status_code == 404
    assert client.post("/v1/rollouts/nope/pause", headers=OPERATE).status_code == 404
    r = client.post("/v1/rollouts/nope/explode", headers=OPERATE)
    assert r.status_code == 422 and "command" in r.json()["error"]
    r = client.post("/v1/rollouts", content=b"{not json", headers={**OPERATE, "Content-Type": "application/json"})
    assert r.status_code == 422


def test_bodies_over_the_limit_are_refused(env):
    with TestClient(app_for(service(env, max_body_bytes=2048))) as c:
        r = c.post("/v1/rollouts", json={"specYaml": "x" * 5000}, headers=OPERATE)
        assert r.status_code == 413 and "larger than 2048 bytes" in r.json()["error"]


def test_scenario_and_seed_only_in_sim_mode(env):
    with TestClient(app_for(service(env, sim=False, daemon=False))) as c:
        r = c.post("/v1/rollouts", json={"spec": "reviews", "scenario": "healthy"}, headers=OPERATE)
        assert r.status_code == 400 and "only accepted by `serve --sim`" in r.json()["error"]
        r = c.post("/v1/rollouts", json={"spec": "reviews"}, headers=OPERATE)
        assert r.status_code == 400 and "sources.metrics.type" in r.json()["error"]


# ---- metrics ----


def test_metrics_show_weights_phases_decisions_tick_time_and_evidence(client):
    rollout = start(client, scenario="healthy", seed=5)
    wait_for(client, rollout["id"], "Progressing")
    time.sleep(0.4)
    text = client.get("/metrics").text
    rid = rollout["id"]
    assert f'canary_analyzer_canary_weight{{name="reviews",namespace="bookinfo",rollout="{rid}"}}' in text
    labels = f'name="reviews",namespace="bookinfo",phase="Progressing",rollout="{rid}"'
    assert f"canary_analyzer_rollout_phase{{{labels}}} 1.0" in text
    assert 'canary_analyzer_decisions_total{kind="start"} 1.0' in text
    assert "canary_analyzer_tick_duration_seconds_count" in text
    assert f'canary_analyzer_evidence{{metric="errors",name="reviews",namespace="bookinfo",rollout="{rid}"}}' in text
    assert "canary_analyzer_source_errors_total" not in text or 'source="metrics"' in text


def test_source_errors_are_counted_by_source(env):
    # Prometheus is down for two simulated minutes: at 120x that is one wall second, several ticks wide.
    def errors(c: TestClient) -> float:
        lines = [x for x in c.get("/metrics").text.splitlines()
                 if x.startswith('canary_analyzer_source_errors_total{source="metrics"}')]
        return float(lines[0].split()[-1]) if lines else 0.0

    with TestClient(app_for(service(env, sim_speed=120))) as c:
        start(c, scenario="telemetry-gap", seed=1)
        deadline = time.monotonic() + 60
        while errors(c) < 1 and time.monotonic() < deadline:  # the gap comes early; no need to wait for the end
            time.sleep(0.1)
        assert errors(c) >= 1


def test_report_is_a_self_contained_page_for_a_read_token(env):
    with TestClient(app_for(service(env, sim_speed=600))) as c:
        rollout = start(c, scenario="error-regression", seed=1)
        assert wait(c, rollout["id"])["phase"] == "RolledBack"
        assert c.get(f"/v1/rollouts/{rollout['id']}/report").status_code == 401
        r = c.get(f"/v1/rollouts/{rollout['id']}/report", headers=READ)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        assert rollout["id"] in r.text and "<svg" in r.text and "<script src" not in r.text
        assert c.get("/v1/rollouts/nope/report", headers=READ).status_code == 404


# ---- Flagger webhook ----


def flagger_call(client: TestClient, checksum: str, scenario: str) -> tuple[int, dict]:
    body = {"name": "reviews", "namespace": "bookinfo", "phase": "Progressing", "checksum": checksum,
            "metadata": {"spec": "reviews", "scenario": scenario, "seed": "3"}}
    r = client.post("/v1/hooks/flagger", json=body, headers=READ)
    return r.status_code, r.json()


def test_flagger_hook_passes_a_healthy_canary_and_fails_a_regression_per_checksum(client):
    codes = [flagger_call(client, "rev-1", "healthy")[0] for _ in range(15)]
    assert set(codes) == {200}
    # Healthy for five minutes, then 3x the errors: 200 until the regression is proven, then above 202.
    bad = [flagger_call(client, "rev-2", "late-error-regression") for _ in range(40)]
    first_fail = next(i for i, (code, _) in enumerate(bad) if code > 202)
    assert first_fail >= 5 and all(code == 200 for code, _ in bad[:first_fail])
    assert all(code == 412 for code, _ in bad[first_fail:])  # proven stays proven
    assert bad[first_fail][1]["verdict"] == "fail" and "errors" in bad[first_fail][1]["reason"]
    # A new revision starts fresh; evidence accumulates per checksum.
    code, body = flagger_call(client, "rev-3", "late-error-regression")
    assert code == 200 and body["intervals"] == 1
    assert flagger_call(client, "rev-1", "healthy")[1]["intervals"] == 16


def test_flagger_hook_needs_a_spec_and_valid_names(client):
    r = client.post("/v1/hooks/flagger", json={"name": "reviews", "namespace": "bookinfo"}, headers=READ)
    assert r.status_code == 400 and "metadata.spec" in r.json()["error"]
    r = client.post("/v1/hooks/flagger", json={"name": "reviews", "namespace": 'x"}) or vector(1', "metadata": {
        "spec": "reviews"}}, headers=READ)
    assert r.status_code == 400 and "namespace" in r.json()["error"]
