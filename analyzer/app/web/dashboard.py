"""The live web dashboard, served by the same FastAPI app as the API (`serve`, `serve --sim`).

Pages: `/` (every rollout), `/rollouts/{id}` (one rollout, with Promote/Pause/Resume/Abort for the
`operate` scope), `/plan` (what `canary-analyzer plan` says for a pasted spec), `/login`. Sign-in takes
an API token and sets a signed, HttpOnly, SameSite=Strict cookie carrying its scope; every POST form
carries a CSRF token. Pages work without JavaScript; `/static/dashboard.js` adds live updates from
`/live` (Server-Sent Events), which re-renders the page's live sections on the server at each new tick.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from analyzer.app.web import board, pages
from analyzer.app.web.charts import CHART_CSS
from analyzer.app.web.session import COOKIE, LOGIN_COOKIE, LOGIN_TTL_S, Session, Signer
from analyzer.errors import UserError
from analyzer.model import Command, Phase
from analyzer.store import control
from analyzer.store.history import rollout_detail, rollout_spec, ticks_frame, verdicts_frame
from analyzer.store.sql import RolloutNotFound

if TYPE_CHECKING:
    from analyzer.app.api import Service

log = structlog.get_logger("analyzer.dashboard")

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
           "X-Frame-Options": "DENY", "Cache-Control": "no-store"}
LIVE_EVERY_S = 1.0  # at most one live update a second per open page
LIVE_STREAM_S = 25.0  # a stream ends after this long and the browser reconnects, so shutdown never waits long
COMMAND_WAIT_S = 5.0  # how long a command's POST waits for the leader before showing "queued"
FINDINGS_EVERY_S = 10.0
DASHBOARD_CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 0; color: #111; }
header { background: #20323f; color: #fff; padding: 8px 16px; min-height: 20px; }
header a { color: #fff; margin-right: 14px; } header .scope { color: #cfe; margin-right: 10px; }
main { max-width: 1200px; margin: 0 auto; padding: 8px 16px 24px; }
h1 { font-size: 22px; } h2 { font-size: 17px; margin-top: 26px; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; width: 100%; font-size: 13px; } th, td { border-bottom: 1px solid #eee;
padding: 4px 6px; text-align: left; vertical-align: top; } th { background: #f6f6f6; }
.muted { color: #666; } .small { font-size: 11px; } .hot { color: #b00020; font-weight: 600; }
.inline { display: inline; } .filters { margin: 8px 0; } .filters select { margin-right: 10px; }
meter { width: 110px; } .charts { display: flex; flex-wrap: wrap; gap: 8px; }
.scroll { max-height: 420px; overflow-y: auto; } pre { background: #f7f7f7; padding: 10px; overflow-x: auto; }
dl.facts { display: grid; grid-template-columns: max-content auto; gap: 2px 14px; } dt { font-weight: 600; }
.error { background: #fbe4e4; padding: 8px 12px; border-radius: 4px; }
.command-result { padding: 8px 12px; border-radius: 4px; background: #fff4d6; }
.command-result.applied { background: #e5f5e5; }
button { font: inherit; padding: 4px 12px; cursor: pointer; } button.abort { color: #b00020; }
button:focus-visible, a:focus-visible, select:focus-visible, input:focus-visible, textarea:focus-visible
{ outline: 3px solid #1f77b4; outline-offset: 1px; }
.outcome.promoted { color: #1a7f1a; } .outcome.rolled_back, .outcome.aborted, .outcome.failed { color: #b00020; }
"""


def _script() -> bytes:
    return resources.files("analyzer.app.web").joinpath("static/dashboard.js").read_bytes()


class Board:
    """The dashboard's state in this process: the cookie signer and the last trace findings per rollout."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.store = service.store
        self.signer = Signer(service.tokens)
        self.findings: dict[str, tuple[float, list[Any]]] = {}

    # ---- sections ----

    def _findings(self, rollout_id: str) -> list[Any]:
        """Trace findings of a rollout this replica ticks (spans live in the engine), kept once it finishes."""
        daemon = self.service.daemon
        cached = self.findings.get(rollout_id)
        if cached is not None and time.monotonic() - cached[0] < FINDINGS_EVERY_S:
            return cached[1]
        runner = None if daemon is None else daemon.runners.get(rollout_id)
        if runner is None:
            return [] if cached is None else cached[1]
        try:
            report = runner.engine.trace_report()
            found = [] if report is None else report.verdicts()
        except Exception as exc:  # spans change under a running tick; the next look succeeds
            log.warning("trace_findings_failed", rollout=rollout_id, error=f"{type(exc).__name__}: {exc}")
            return [] if cached is None else cached[1]
        self.findings[rollout_id] = (time.monotonic(), found)
        return found

    def rollout_sections(self, rollout_id: str, session: Session, command_id: int | None) -> tuple[dict[str, str],
                                                                                                    Any, bool]:
        detail = rollout_detail(self.store, rollout_id)
        spec = rollout_spec(self.store, rollout_id)
        row = board.row(self.store, rollout_id)
        ticks = ticks_frame(self.store, rollout_id)
        verdicts = verdicts_frame(self.store, rollout_id, with_details=True)
        command = None if command_id is None else board.command_state(self.store, rollout_id, command_id)
        trace_events = [f"tick {x.tick}: {x.kind}: {x.message}" for x in detail.events if "trace" in x.kind]
        # Kept with the last tick once finished; while running, from the engine on the leader.
        findings = list(detail.trace_verdicts) or self._findings(rollout_id)
        sections = {
            "head": pages.head_section(detail, row, spec, command),
            "commands": pages.commands_section(rollout_id, detail.summary.phase, session),
            "charts": pages.charts_section(ticks, verdicts, spec),
            "log": pages.log_section(detail),
            "events": pages.events_section(detail),
            "findings": pages.findings_section(findings, trace_events),
        }
        done = Phase(detail.summary.phase) in control.FINAL_PHASES and (command is None or command.tick is not None)
        return sections, detail, done

    def list_sections(self, phase: str | None, namespace: str | None) -> tuple[dict[str, str], list[board.Row]]:
        rows = board.rows(self.store, phase=phase, namespace=namespace)
        return {"active": pages.active_section(rows), "finished": pages.finished_section(rows)}, rows


# ---- request helpers ----


def _html(body: str, status_code: int = 200) -> HTMLResponse:
    return HTMLResponse(body, status_code=status_code, headers=HEADERS)


def _secure(request: Request) -> bool:
    return request.url.scheme == "https" or request.headers.get("x-forwarded-proto", "").lower() == "https"


def _safe_next(value: str | None) -> str:
    """Only a path on this site: never `//host` or a full URL (an open redirect)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value


def _to_login(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303, headers=HEADERS)


async def _form(request: Request) -> dict[str, str]:
    """An url-encoded form body (the BodyLimit middleware has bounded its size)."""
    raw = (await request.body()).decode("utf-8", errors="replace")
    return {k: v[0] for k, v in parse_qs(raw, keep_blank_values=True).items()}


def _phase_param(value: str | None) -> str | None:
    if not value:
        return None
    if value not in {p.value for p in Phase}:
        raise UserError(f"phase: {value!r} is not one of {', '.join(p.value for p in Phase)}")
    return value


def router(service: Service) -> APIRouter:
    """The dashboard's routes; `create_app` includes them next to the API's."""
    b = Board(service)
    r = APIRouter(include_in_schema=False)

    def current(request: Request) -> Session | None:
        return b.signer.session(request.cookies.get(COOKIE))

    # ---- assets ----

    @r.get("/static/dashboard.js")
    def script() -> Response:
        return Response(_script(), media_type="text/javascript; charset=utf-8",
                        headers={**HEADERS, "Cache-Control": "max-age=300"})

    @r.get("/static/dashboard.css")
    def stylesheet() -> Response:
        return Response(DASHBOARD_CSS + CHART_CSS, media_type="text/css; charset=utf-8",
                        headers={**HEADERS, "Cache-Control": "max-age=300"})

    # ---- sign-in ----

    @r.get("/login")
    def login_form(request: Request, next: str | None = None) -> Response:
        nonce, token = b.signer.login_nonce()
        response = _html(pages.login_page(token, _safe_next(next)))
        response.set_cookie(LOGIN_COOKIE, nonce, max_age=LOGIN_TTL_S, httponly=True, samesite="strict",
                            secure=_secure(request), path="/login")
        return response

    @r.post("/login")
    async def login(request: Request) -> Response:
        form = await _form(request)
        next_path = _safe_next(form.get("next"))
        if not b.signer.login_ok(request.cookies.get(LOGIN_COOKIE), form.get("csrf")):
            log.warning("dashboard_login_refused", why="csrf")
            return _relogin(request, next_path, "The sign-in form expired; try again.")
        signed = b.signer.sign_in(form.get("token", "").strip())
        if signed is None:
            log.warning("dashboard_login_refused", why="token")
            return _relogin(request, next_path, "That token is not valid here.", 401)
        session, cookie = signed
        log.info("dashboard_login", scope=session.scope)
        response = RedirectResponse(next_path, status_code=303, headers=HEADERS)
        response.set_cookie(COOKIE, cookie, max_age=b.signer.ttl_s, httponly=True, samesite="strict",
                            secure=_secure(request), path="/")
        response.delete_cookie(LOGIN_COOKIE, path="/login")
        return response

    def _relogin(request: Request, next_path: str, error: str, status_code: int = 400) -> Response:
        nonce, token = b.signer.login_nonce()
        response = _html(pages.login_page(token, next_path, error), status_code)
        response.set_cookie(LOGIN_COOKIE, nonce, max_age=LOGIN_TTL_S, httponly=True, samesite="strict",
                            secure=_secure(request), path="/login")
        return response

    @r.post("/logout")
    async def logout(request: Request) -> Response:
        session = current(request)
        form = await _form(request)
        if session is not None and not b.signer.csrf_ok(session, form.get("csrf")):
            return _html(pages.message_page("Refused", "The form's CSRF token is not valid; reload the page.",
                                            session=session, csrf=b.signer.csrf(session)), 403)
        response = RedirectResponse("/login", status_code=303, headers=HEADERS)
        response.delete_cookie(COOKIE, path="/")
        return response

    # ---- pages ----

    @r.get("/")
    def index(request: Request, phase: str | None = None, namespace: str | None = None) -> Response:
        session = current(request)
        if session is None:
            return _to_login(request)
        csrf = b.signer.csrf(session)
        try:
            chosen = _phase_param(phase)
        except UserError as exc:
            return _html(pages.message_page("Bad filter", str(exc), session=session, csrf=csrf), 400)
        ns = namespace or None
        _, rows = b.list_sections(chosen, ns)
        live = "/live?" + "&".join(f"{k}={quote(v)}" for k, v in (("phase", chosen), ("namespace", ns)) if v)
        return _html(pages.list_page(rows, session=session, csrf=csrf, phase=chosen, namespace=ns,
                                     namespaces=board.namespaces(b.store), live=live.rstrip("?")))

    @r.get("/rollouts/{rollout_id}")
    def rollout(request: Request, rollout_id: str, command: int | None = None) -> Response:
        session = current(request)
        if session is None:
            return _to_login(request)
        csrf = b.signer.csrf(session)
        try:
            sections, detail, _ = b.rollout_sections(rollout_id, session, command)
        except RolloutNotFound:
            return _html(pages.message_page("Not found", f"No rollout {rollout_id!r}.", session=session,
                                            csrf=csrf), 404)
        live = f"/live?rollout={quote(rollout_id)}" + ("" if command is None else f"&command={command}")
        return _html(pages.rollout_page(rollout_id, sections, detail.spec_text, rollout_spec(b.store, rollout_id),
                                        session=session, csrf=csrf, live=live))

    @r.get("/rollouts/{rollout_id}/report")
    def report(request: Request, rollout_id: str) -> Response:
        """The rollout's self-contained HTML report (`canary-analyzer report`), as a download."""
        session = current(request)
        if session is None:
            return _to_login(request)
        from analyzer.app.web.report import render_report  # pandas loads only when a report is asked for

        try:
            page = render_report(b.store, rollout_id)
        except RolloutNotFound:
            return _html(pages.message_page("Not found", f"No rollout {rollout_id!r}.", session=session,
                                            csrf=b.signer.csrf(session)), 404)
        name = "".join(c if c.isalnum() or c in "-_" else "_" for c in rollout_id)
        return HTMLResponse(page, headers={"Content-Disposition": f'attachment; filename="report-{name}.html"'})

    def _operator(request: Request, rollout_id: str, command: str | None) -> tuple[Session, Command] | Response:
        session = current(request)
        if session is None:
            return _to_login(request)
        csrf = b.signer.csrf(session)
        if not session.can_operate:
            return _html(pages.message_page("Not allowed", "Commands need a token with the operate scope.",
                                            session=session, csrf=csrf), 403)
        try:
            return session, Command(command or "")
        except ValueError:
            return _html(pages.message_page("Bad command", f"command: {command!r} is not one of "
                                            f"{', '.join(c.value for c in Command)}", session=session, csrf=csrf), 400)

    @r.get("/rollouts/{rollout_id}/confirm")
    def confirm(request: Request, rollout_id: str, command: str | None = None) -> Response:
        checked = _operator(request, rollout_id, command)
        if isinstance(checked, Response):
            return checked
        session, cmd = checked
        return _html(pages.confirm_page(rollout_id, cmd, session=session, csrf=b.signer.csrf(session)))

    @r.post("/rollouts/{rollout_id}/command")
    async def command(request: Request, rollout_id: str) -> Response:
        form = await _form(request)
        checked = _operator(request, rollout_id, form.get("command"))
        if isinstance(checked, Response):
            return checked
        session, cmd = checked
        csrf = b.signer.csrf(session)
        if not b.signer.csrf_ok(session, form.get("csrf")):
            return _html(pages.message_page("Refused", "The form's CSRF token is not valid; reload the page.",
                                            session=session, csrf=csrf), 403)
        try:
            phase = Phase((await run_in_threadpool(board.row, b.store, rollout_id) or _missing(rollout_id))
                          .status.summary.phase)
            if phase in control.FINAL_PHASES:
                return _html(pages.message_page("Already finished", f"{cmd.value}: rollout {rollout_id!r} already "
                                                f"finished ({phase.value})", session=session, csrf=csrf), 409)
            command_id = await run_in_threadpool(control.enqueue_command, b.store, rollout_id, cmd)
        except RolloutNotFound:
            return _html(pages.message_page("Not found", f"No rollout {rollout_id!r}.", session=session,
                                            csrf=csrf), 404)
        log.info("command_queued", rollout=rollout_id, command=cmd.value, via="dashboard")
        if service.daemon is not None:
            service.daemon.nudge()
        deadline = time.monotonic() + COMMAND_WAIT_S
        while time.monotonic() < deadline:  # show the result at once when the leader is quick
            state = await run_in_threadpool(board.command_state, b.store, rollout_id, command_id)
            if state is not None and state.tick is not None:
                break
            await asyncio.sleep(0.1)
        return RedirectResponse(f"/rollouts/{quote(rollout_id)}?command={command_id}", status_code=303,
                                headers=HEADERS)

    # ---- plan ----

    @r.get("/plan")
    def plan_form(request: Request) -> Response:
        session = current(request)
        if session is None:
            return _to_login(request)
        return _html(pages.plan_page(session=session, csrf=b.signer.csrf(session)))

    @r.post("/plan")
    async def plan(request: Request) -> Response:
        session = current(request)
        if session is None:
            return _to_login(request)
        csrf = b.signer.csrf(session)
        form = await _form(request)
        if not b.signer.csrf_ok(session, form.get("csrf")):
            return _html(pages.message_page("Refused", "The form's CSRF token is not valid; reload the page.",
                                            session=session, csrf=csrf), 403)
        values = {k: form.get(k, "").strip() for k in ("rps", "error_rate", "p99", "budget")}
        spec_text = form.get("spec", "")
        try:
            lines = await run_in_threadpool(plan_lines_for, spec_text, values)
            error = ""
        except UserError as exc:
            lines, error = [], " ".join(str(exc).split())
        return _html(pages.plan_page(session=session, csrf=csrf, spec_text=spec_text, rps=values["rps"],
                                     error_rate=values["error_rate"], p99=values["p99"], budget=values["budget"],
                                     lines=lines, error=error), 400 if error else 200)

    # ---- live ----

    @r.get("/live")
    async def live(request: Request, rollout: str | None = None, phase: str | None = None,
                   namespace: str | None = None, command: int | None = None) -> Response:
        session = current(request)
        if session is None:
            return Response(status_code=401, headers=HEADERS)
        try:
            chosen = _phase_param(phase)
        except UserError as exc:
            return Response(str(exc), status_code=400, headers=HEADERS)
        return StreamingResponse(_stream(request, session, rollout, chosen, namespace or None, command),
                                 media_type="text/event-stream",
                                 headers={**HEADERS, "X-Accel-Buffering": "no"})

    async def _stream(request: Request, session: Session, rollout_id: str | None, phase: str | None,
                      namespace: str | None, command_id: int | None) -> AsyncIterator[bytes]:
        yield b"retry: 1000\n\n"
        seen: tuple[Any, ...] | None = None
        ends = time.monotonic() + LIVE_STREAM_S
        while time.monotonic() < ends and not await request.is_disconnected():
            try:
                mark = await run_in_threadpool(board.fingerprint, b.store, rollout_id)
                if mark != seen:
                    seen = mark
                    if rollout_id is None:
                        sections, _ = await run_in_threadpool(b.list_sections, phase, namespace)
                        done = False
                    else:
                        sections, _, done = await run_in_threadpool(b.rollout_sections, rollout_id, session,
                                                                    command_id)
                    data = {"sections": {f"live-{k}": v for k, v in sections.items()}, "done": done}
                    yield f"event: update\ndata: {json.dumps(data)}\n\n".encode()
                    if done:
                        return
                else:
                    yield b": idle\n\n"
            except RolloutNotFound:
                yield b'event: update\ndata: {"sections": {}, "done": true}\n\n'
                return
            except Exception as exc:  # the store may be briefly unreachable: say so, try again
                log.warning("live_update_failed", error=f"{type(exc).__name__}: {exc}")
            await asyncio.sleep(LIVE_EVERY_S)

    return r


def _missing(rollout_id: str) -> Any:
    raise RolloutNotFound(rollout_id)


def plan_lines_for(spec_text: str, values: dict[str, str]) -> list[str]:
    """What `canary-analyzer plan SPEC --rps ... --budget ...` prints, for a pasted spec."""
    from analyzer.app.api import parse_text
    from analyzer.app.cli.plan import plan_lines, with_budget
    from analyzer.plan import make_plan

    def number(name: str, label: str) -> float:
        try:
            return float(values[name])
        except ValueError:
            raise UserError(f"{label}: {values[name]!r} is not a number") from None

    rps, rate, p99 = number("rps", "rps"), number("error_rate", "baseline error rate"), number("p99", "p99 latency")
    if rps <= 0 or not 0 <= rate < 1 or p99 <= 0:
        raise UserError(f"plan: rps {rps:g}, baseline error rate {rate:g} and p99 {p99:g} ms must be positive "
                        "(error rate below 1)")
    if not spec_text.strip():
        raise UserError("spec: paste a rollout spec (YAML)")
    spec, _ = parse_text(spec_text, "spec")
    if values.get("budget"):
        spec = with_budget(spec, values["budget"])
    return plan_lines(make_plan(spec, rps=rps, baseline_error_rate=rate, latency_p99_ms=p99))
