"""The web dashboard through the ASGI app: sign-in, cookies, CSRF, scopes, escaping, plan, live updates."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from analyzer.app.cli.main import app as cli
from analyzer.app.simulation import run_rollout
from analyzer.app.web.session import COOKIE, Signer
from analyzer.config import parse_spec
from analyzer.model import Phase
from analyzer.sim.scenario import load_scenario
from analyzer.store import control
from analyzer.store.sql import SqlStore
from tests.daemon_support import OPERATE, OPERATE_TOKEN, READ_TOKEN, REVIEWS, Env, app_for, make_env, service

MARKUP = '<script>alert("x")</script>'


@pytest.fixture
def env(tmp_path: Path) -> Env:
    return make_env(tmp_path)


@pytest.fixture
def client(env: Env) -> Iterator[TestClient]:
    with TestClient(app_for(service(env)), base_url="http://127.0.0.1") as c:
        yield c


def sign_in(c: TestClient, token: str, next_path: str = "/") -> object:
    form = c.get("/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert csrf is not None
    return c.post("/login", data={"token": token, "csrf": csrf.group(1), "next": next_path}, follow_redirects=False)


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found is not None
    return found.group(1)


def start(c: TestClient, spec: str = "reviews", scenario: str = "healthy") -> str:
    r = c.post("/v1/rollouts", json={"spec": spec, "scenario": scenario, "seed": 3}, headers=OPERATE)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def wait_phase(c: TestClient, rollout_id: str, ok: set[str], timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        phase = c.get(f"/v1/rollouts/{rollout_id}", headers=OPERATE).json()["phase"]
        if phase in ok:
            return str(phase)
        time.sleep(0.05)
    raise AssertionError(f"{rollout_id} never reached {ok}")


# ---- sign-in and sessions ----


@pytest.mark.parametrize("path", ["/", "/rollouts/anything", "/plan", "/rollouts/x/confirm?command=abort"])
def test_signed_out_pages_redirect_to_login(client: TestClient, path: str) -> None:
    r = client.get(path, follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"].startswith("/login?next=")
    assert client.get(r.headers["location"]).status_code == 200


def test_login_sets_a_strict_httponly_expiring_cookie_and_returns_to_next(client: TestClient) -> None:
    r = sign_in(client, READ_TOKEN, "/plan")
    assert r.status_code == 303 and r.headers["location"] == "/plan"
    cookie = next(h for h in r.headers.get_list("set-cookie") if h.startswith(f"{COOKIE}="))
    attrs = {a.strip().split("=")[0].lower() for a in cookie.split(";")[1:]}
    assert {"httponly", "max-age", "samesite"} <= attrs
    assert "samesite=strict" in cookie.lower()
    assert READ_TOKEN not in cookie  # the cookie carries the scope, never the token
    assert client.get("/plan").status_code == 200


def test_login_refuses_a_bad_token_and_a_missing_csrf(client: TestClient) -> None:
    assert sign_in(client, "not-a-token-0123456789").status_code == 401
    client.get("/login")
    r = client.post("/login", data={"token": READ_TOKEN, "csrf": "forged"}, follow_redirects=False)
    assert r.status_code == 400 and COOKIE not in r.headers.get("set-cookie", "")


def test_login_never_redirects_off_site(client: TestClient) -> None:
    for target in ("//evil.example/x", "https://evil.example/", "/\\evil"):
        assert sign_in(client, READ_TOKEN, target).headers["location"] == "/"


def test_forged_and_expired_cookies_are_signed_out(env: Env) -> None:
    from analyzer.app.settings import load_tokens

    signer = Signer(load_tokens(env.token_file))
    signed = signer.sign_in(READ_TOKEN, now=1000.0)
    assert signed is not None
    session, cookie = signed
    assert signer.session(cookie, now=1001.0) == session
    assert signer.session(cookie, now=1000.0 + signer.ttl_s + 1) is None  # expired
    payload, mac = cookie.split(".")
    forged = payload.replace(payload[3], "A" if payload[3] != "A" else "B", 1)
    assert signer.session(f"{forged}.{mac}", now=1001.0) is None
    # A cookie signed for other tokens (another installation, or rotated tokens) is refused.
    other = env.dir / "other-tokens"
    other.write_text(f"operate {OPERATE_TOKEN}x\n")
    assert Signer(load_tokens(other)).session(cookie, now=1001.0) is None


def test_pages_send_a_same_origin_csp_and_load_nothing_from_elsewhere(client: TestClient) -> None:
    sign_in(client, OPERATE_TOKEN)
    for path in ("/", "/plan", "/login"):
        r = client.get(path)
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "style-src 'self'" in csp and "default-src 'none'" in csp
        assert not re.search(r'(src|href)="(https?:)?//', r.text)
        assert "<script>" not in r.text and " style=" not in r.text and " on" + "click=" not in r.text
    js = client.get("/static/dashboard.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    assert "EventSource" in js.text
    assert client.get("/static/dashboard.css").headers["content-type"].startswith("text/css")


# ---- scopes and commands ----


def test_read_scope_sees_no_buttons_and_cannot_command(client: TestClient, env: Env) -> None:
    rollout_id = start(client, scenario="low-traffic")
    sign_in(client, READ_TOKEN)
    page = client.get(f"/rollouts/{rollout_id}")
    assert page.status_code == 200 and "Commands" not in page.text
    assert not re.search(r">(Promote|Pause|Resume|Abort)</button>", page.text)
    assert client.get(f"/rollouts/{rollout_id}/confirm?command=abort").status_code == 403
    r = client.post(f"/rollouts/{rollout_id}/command", data={"command": "abort", "csrf": csrf_of(page.text)},
                    follow_redirects=False)
    assert r.status_code == 403
    assert control.pending_commands(SqlStore(env.db), rollout_id) == []


def test_operate_abort_needs_csrf_and_shows_the_applied_result(client: TestClient, env: Env) -> None:
    rollout_id = start(client, scenario="low-traffic")
    wait_phase(client, rollout_id, {"HeaderTesting", "Progressing"})
    sign_in(client, OPERATE_TOKEN)
    page = client.get(f"/rollouts/{rollout_id}")
    for name in ("Promote", "Pause", "Resume", "Abort"):
        assert f">{name}</button>" in page.text
    confirm = client.get(f"/rollouts/{rollout_id}/confirm?command=abort")
    assert confirm.status_code == 200 and "Abort rollout" in confirm.text
    refused = client.post(f"/rollouts/{rollout_id}/command", data={"command": "abort", "csrf": "x"},
                          follow_redirects=False)
    assert refused.status_code == 403
    assert control.pending_commands(SqlStore(env.db), rollout_id) == []
    done = client.post(f"/rollouts/{rollout_id}/command", data={"command": "abort", "csrf": csrf_of(confirm.text)},
                       follow_redirects=False)
    assert done.status_code == 303 and "?command=" in done.headers["location"]
    result = client.get(done.headers["location"])
    assert "Abort: applied at tick" in result.text and "phase now Aborted" in result.text
    assert client.get(f"/v1/rollouts/{rollout_id}", headers=OPERATE).json()["phase"] == Phase.ABORTED.value
    # Finished: no buttons, and a late command is refused.
    again = client.post(f"/rollouts/{rollout_id}/command", data={"command": "pause", "csrf": csrf_of(result.text)},
                        follow_redirects=False)
    assert again.status_code == 409 and ">Abort</button>" not in result.text


# ---- what the pages show ----


def _markup_store(env: Env) -> str:
    """A rollout whose name, metric names and so reasons and events carry markup, run on the simulated mesh."""
    data = yaml.safe_load(REVIEWS.read_text())
    data["metadata"]["name"] = f"{MARKUP}<b>bold</b>"
    data["analysis"]["metrics"][0]["name"] = f"err{MARKUP}"
    data["analysis"]["metrics"][1]["name"] = f"lat{MARKUP}"  # its reasons start with the metric's name
    spec = parse_spec(data, "markup")
    store = SqlStore(env.db)
    result = run_rollout(spec, load_scenario("latency-regression"), seed=2, store=store, rollout_id="markup-1",
                         spec_text=yaml.safe_dump(data))
    store.close()
    assert result.outcome == "rolled_back" and MARKUP in result.reason
    return "markup-1"


def test_every_value_from_a_spec_or_a_reason_is_escaped(client: TestClient, env: Env) -> None:
    rollout_id = _markup_store(env)
    sign_in(client, READ_TOKEN)
    for path in ("/", f"/rollouts/{rollout_id}"):
        body = client.get(path).text
        assert MARKUP not in body and "<b>bold</b>" not in body
        assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in body
    stream = client.get(f"/live?rollout={rollout_id}").text  # finished: one update, then the stream ends
    data = json.loads(next(line for line in stream.splitlines() if line.startswith("data: "))[6:])
    assert data["done"] is True
    for html in data["sections"].values():
        assert MARKUP not in html


def test_list_shows_active_first_with_filters_and_finished_with_outcome(client: TestClient, env: Env) -> None:
    finished = _markup_store(env)
    active = start(client, "ratings", "low-traffic")
    wait_phase(client, active, {"HeaderTesting", "Progressing"})
    sign_in(client, READ_TOKEN)
    body = client.get("/").text
    active_part, finished_part = body.split("<h2>Finished</h2>")
    assert active in active_part and finished not in active_part
    assert finished in finished_part and "rolled_back" in finished_part
    assert "bookinfo / ratings" in active_part and "<meter" in active_part
    assert re.search(r"Decision minute</th>", finished_part)
    only = client.get("/?phase=RolledBack").text
    assert finished in only and active not in only
    assert active not in client.get("/?namespace=elsewhere").text
    assert client.get("/?phase=<x>").status_code == 400


def test_rollout_page_shows_charts_log_events_and_spec(client: TestClient, env: Env) -> None:
    rollout_id = _markup_store(env)
    sign_in(client, READ_TOKEN)
    body = client.get(f"/rollouts/{rollout_id}").text
    assert body.count("<svg") >= 4
    for words in ("Weight timeline", "canary vs baseline per interval", "evidence against its threshold",
                  "confidence sequence", "tolerance 1.5", "Decision log", "Events", "Trace findings", "Spec",
                  "step 1: 10%"):
        assert words in body, words
    assert "rollback" in body
    findings = body.split("<h2>Trace findings</h2>")[1].split("<h2>")[0]
    assert "traces/summary" in findings  # kept with the last tick, read back from the store
    assert client.get("/rollouts/nope").status_code == 404


def test_rollout_page_links_its_report_which_downloads_for_a_signed_in_user(client: TestClient, env: Env) -> None:
    rollout_id = _markup_store(env)
    assert client.get(f"/rollouts/{rollout_id}/report", follow_redirects=False).status_code == 303
    sign_in(client, READ_TOKEN)
    page = client.get(f"/rollouts/{rollout_id}").text
    link = re.search(r'<a id="report" href="([^"]+)" download>', page)
    assert link is not None
    r = client.get(link.group(1))
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert r.headers["content-disposition"].startswith("attachment;")
    assert rollout_id in r.text and "<svg" in r.text and "rolled back" in r.text.lower()
    assert MARKUP not in r.text and "<b>bold</b>" not in r.text  # the spec's markup stays text
    assert client.get("/rollouts/nope/report").status_code == 404


def test_live_stream_pushes_new_ticks_of_a_running_rollout(client: TestClient) -> None:
    rollout_id = start(client, scenario="low-traffic")
    sign_in(client, READ_TOKEN)
    ticks = []
    with client.stream("GET", f"/live?rollout={rollout_id}") as stream:
        for line in stream.iter_lines():
            if line.startswith("data: "):
                head = json.loads(line[6:])["sections"]["live-head"]
                ticks.append(int(re.search(r"<dt>Ticks</dt><dd>(\d+)</dd>", head).group(1)))  # type: ignore[union-attr]
                if len(set(ticks)) >= 3:
                    break
    assert len(set(ticks)) >= 3 and ticks == sorted(ticks)


# ---- plan ----


def test_plan_page_says_what_the_cli_says(client: TestClient, tmp_path: Path) -> None:
    sign_in(client, READ_TOKEN)
    page = client.get("/plan")
    text = REVIEWS.read_text()
    r = client.post("/plan", data={"csrf": csrf_of(page.text), "spec": text, "rps": "2", "error_rate": "0.005",
                                   "p99": "250", "budget": "30m"})
    assert r.status_code == 200
    shown = re.search(r'<pre id="plan-output">(.*?)</pre>', r.text, re.S)
    assert shown is not None
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(text)
    said = CliRunner().invoke(cli, ["plan", str(spec_file), "--rps", "2", "--baseline-error-rate", "0.005",
                                    "--latency-p99-ms", "250", "--budget", "30m"])
    assert said.exit_code == 0, said.output
    from html import unescape

    assert unescape(shown.group(1)).splitlines() == [line.rstrip() for line in said.output.strip().splitlines()]
    assert "load:" in shown.group(1)
    bad = client.post("/plan", data={"csrf": csrf_of(page.text), "spec": "kind: [", "rps": "x"})
    assert bad.status_code == 400 and 'id="plan-error"' in bad.text and "Traceback" not in bad.text
    assert client.post("/plan", data={"spec": text, "rps": "2"}).status_code == 403  # no CSRF token


# ---- deploy ----


def test_the_example_ingress_exposes_every_dashboard_path_and_nothing_internal(env: Env) -> None:
    """deploy/kubernetes/gateway.yaml routes each page, form and asset of the dashboard, but not /metrics."""
    from analyzer.app.web import dashboard

    gateway = Path(__file__).resolve().parents[1] / "deploy" / "kubernetes" / "gateway.yaml"
    (vs,) = [d for d in yaml.safe_load_all(gateway.read_text()) if d and d["kind"] == "VirtualService"]
    matches = [m["uri"] for route in vs["spec"]["http"] for m in route["match"]]

    def routed(path: str) -> bool:
        return any(path == m.get("exact") or path.startswith(m.get("prefix", "\0")) for m in matches)

    paths = [p.path.replace("{rollout_id}", "r-1") for p in dashboard.router(service(env, daemon=False)).routes]  # type: ignore[attr-defined]
    assert len(paths) >= 10
    assert [p for p in paths if not routed(p)] == []
    assert not any(routed(p) for p in ("/metrics", "/healthz", "/readyz"))
