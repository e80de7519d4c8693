"""The HTTP API of `canary-analyzer serve` (FastAPI; OpenAPI at /openapi.json).

Every replica answers reads from the store; writes (new rollouts, operator commands) go to the
store too, and the leader picks them up. Errors are JSON `{"error": ...}` with a 4xx naming the
problem; a 5xx is a bug. Tokens never reach a log line.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import structlog
import yaml
from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from analyzer.app import flagger, names
from analyzer.app.daemon import OWNER, Daemon
from analyzer.app.settings import ServeSettings, Tokens
from analyzer.app.status import status_json
from analyzer.app.telemetry import CONTENT_TYPE, Telemetry
from analyzer.app.web import dashboard
from analyzer.config import PrometheusSource, RolloutSpec, SpecError, parse_spec
from analyzer.errors import UserError
from analyzer.model import Command, Phase
from analyzer.sim.scenario import builtin_names
from analyzer.store import control
from analyzer.store.sql import RolloutNotFound, SqlStore
from analyzer.store.status import status, statuses

log = structlog.get_logger("analyzer.api")

MAX_WAIT_S = 600.0


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# ---- the service the routes talk to ----


@dataclass
class Service:
    settings: ServeSettings
    store: SqlStore
    tokens: Tokens
    daemon: Daemon | None = None  # None: a read-and-write front end that never ticks
    telemetry: Telemetry = field(default_factory=Telemetry)
    hooks: flagger.FlaggerHooks | None = None

    def __post_init__(self) -> None:
        if self.daemon is not None:
            self.telemetry = self.daemon.telemetry
        if self.hooks is None:
            self.hooks = flagger.FlaggerHooks(self.settings, self.store, self.load_spec)

    def load_spec(self, name: str) -> tuple[RolloutSpec, str]:
        names.check_subdomain("spec", name)
        if self.settings.specs is None:
            raise ApiError(400, "spec: this server has no specs directory (--specs DIR); send specYaml instead")
        path = Path(self.settings.specs) / f"{name}.yaml"
        if not path.is_file():
            raise ApiError(404, f"spec: no spec named {name!r} in the specs directory")
        return parse_text(path.read_text(), f"spec {name}")


def parse_text(text_: str, source: str) -> tuple[RolloutSpec, str]:
    try:
        data = yaml.safe_load(text_)
    except yaml.YAMLError as exc:
        raise SpecError(f"{source}: not valid YAML: {' '.join(str(exc).split())}") from None
    return names.check_spec(parse_spec(data, source)), text_


# ---- request and response bodies ----


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ErrorOut(BaseModel):
    error: str


class StartRequest(Body):
    spec: str | None = Field(default=None, max_length=253, description="Name of a spec in the specs directory")
    spec_yaml: str | None = Field(default=None, alias="specYaml", max_length=200_000, description="A spec as YAML")
    scenario: str | None = Field(default=None, max_length=100, description="serve --sim only: a built-in scenario")
    seed: int | None = Field(default=None, ge=0, le=2**31 - 1, description="serve --sim only: the simulation seed")


class VerdictOut(BaseModel):
    name: str
    verdict: str
    gate: bool
    evidence: float | None
    threshold: float | None
    promotion_evidence: float | None
    ratio: float | None
    ci: list[float | None] | None
    reason: str
    details: dict[str, Any]


class RolloutOut(BaseModel):
    """A rollout's status. Field names match `canary-analyzer history show --json` (its summary and verdicts)."""

    id: str
    label: str
    name: str
    namespace: str
    virtual_service: str | None
    created_at: datetime
    phase: str
    outcome: str | None
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime | None
    decision_minutes: float | None
    steps_reached: int
    max_canary_weight: int | None
    ticks: int
    tick: int | None
    step: int
    weights: dict[str, int]
    header_route: bool
    decision: str | None
    reason: str
    final_verdicts: list[VerdictOut]
    final_verdicts_tick: int | None
    meta: dict[str, Any]


class RolloutList(BaseModel):
    rollouts: list[RolloutOut]


class CommandOut(BaseModel):
    id: int
    rollout: str
    command: str


class JudgeRequest(Body):
    spec: str | None = Field(default=None, max_length=253)
    spec_yaml: str | None = Field(default=None, alias="specYaml", max_length=200_000)
    start: str = Field(max_length=64, description="RFC 3339, unix seconds, now or now-DURATION (now-30m)")
    end: str = Field(max_length=64, description="RFC 3339, unix seconds, now or now-DURATION")
    canary_weight: int | None = Field(default=None, alias="canaryWeight", ge=1, le=99)


class JudgeMetricOut(BaseModel):
    name: str
    verdict: str
    gate: bool
    canary: dict[str, float | None]
    baseline: dict[str, float | None]
    ratio: float | None
    ci: list[float | None] | None
    e_value: float | None
    threshold: float | None
    reason: str


class JudgeOut(BaseModel):
    """Same object as `canary-analyzer judge --json`."""

    rollout: str
    verdict: str
    reason: str
    start: str
    end: str
    interval_s: float
    decided_at: str | None
    metrics: list[JudgeMetricOut]
    data_quality: dict[str, Any]


class Health(BaseModel):
    status: str


class Ready(BaseModel):
    status: str
    store: str
    role: str
    identity: str


# ---- security ----

_bearer = HTTPBearer(auto_error=False, description="`SCOPE TOKEN` lines of --token-file; scopes read and operate")


def _scope(needed: str) -> Callable[..., Awaitable[None]]:
    async def check(request: Request,
                    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> None:
        service: Service = request.app.state.service
        if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
            raise ApiError(401, "authorization: a Bearer token is required")
        if not service.tokens.allows(credentials.credentials, needed):
            if service.tokens.scope_of(credentials.credentials) is None:
                raise ApiError(401, "authorization: the token is not valid")
            raise ApiError(403, f"authorization: the token lacks the {needed!r} scope")

    return check


READ = [Depends(_scope("read"))]
OPERATE = [Depends(_scope("operate"))]


class BodyLimit:
    """Refuses request bodies over `limit` bytes with 413, before they are parsed."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            await _send_error(send, 413, f"body: larger than {self.limit} bytes")
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await _send_error(send, 413, f"body: larger than {self.limit} bytes")
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


async def _send_error(send: Send, status_code: int, message: str) -> None:
    response = JSONResponse({"error": message}, status_code=status_code)
    await send({"type": "http.response.start", "status": status_code, "headers": response.raw_headers})
    await send({"type": "http.response.body", "body": response.body})


# ---- the app ----

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut} for code in (400, 401, 403, 404, 409, 413, 422)
}


def create_app(service: Service) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if service.daemon is not None:
            service.daemon.start()
        try:
            yield
        finally:
            if service.daemon is not None:
                await run_in_threadpool(service.daemon.stop)

    app = FastAPI(title="Canary Analyzer", version="1", lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Automated canary analysis for Istio: rollouts, operator commands, one-shot judging "
                              "and Flagger webhooks.")
    app.state.service = service
    app.add_middleware(BodyLimit, limit=service.settings.max_body_bytes)
    _handlers(app)
    app.include_router(_ops_routes(service))
    app.include_router(_rollout_routes(service), responses=_ERRORS)
    app.include_router(dashboard.router(service))  # the web dashboard: /, /rollouts/{id}, /plan, /login

    @app.middleware("http")
    async def access_log(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        # Method, path and status only: never headers (tokens) or bodies.
        log.info("request", method=request.method, path=request.url.path, status=response.status_code,
                 ms=round(1000 * (time.perf_counter() - started), 1))
        return response

    return app


def _handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse({"error": exc.message}, status_code=exc.status, headers=headers)

    @app.exception_handler(UserError)
    async def user_error(_: Request, exc: UserError) -> JSONResponse:
        return JSONResponse({"error": " ".join(str(exc).split())}, status_code=400)

    @app.exception_handler(RolloutNotFound)
    async def not_found(_: Request, exc: RolloutNotFound) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=404)

    @app.exception_handler(control.RouteBusy)
    async def busy(_: Request, exc: control.RouteBusy) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=409)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for e in exc.errors()[:5]:
            where = ".".join(str(p) for p in e.get("loc", ()) if p != "body") or "body"
            value = e.get("input")
            shown = f" {value!r}:" if value is not None and not isinstance(value, dict | list) else ""
            problems.append(f"{where}:{shown[:120]} {e.get('msg', 'invalid')}")
        return JSONResponse({"error": "; ".join(problems)}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code)


def _ops_routes(service: Service) -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get("/healthz", response_model=Health)
    async def healthz() -> Health:
        return Health(status="ok")

    @router.get("/readyz", response_model=Ready, responses={503: {"model": Ready}})
    async def readyz(response: Response) -> Ready:
        role = service.daemon.role if service.daemon is not None else "follower"
        try:
            await run_in_threadpool(_ping, service.store)
        except Exception as exc:
            log.warning("store_unreachable", error=type(exc).__name__)
            response.status_code = 503
            return Ready(status="unavailable", store="unreachable", role=role, identity=service.settings.identity)
        return Ready(status="ok", store="ok", role=role, identity=service.settings.identity)

    @router.get("/metrics", response_class=Response, responses={200: {"content": {CONTENT_TYPE: {}}}})
    async def metrics() -> Response:
        return Response(service.telemetry.render(), media_type=CONTENT_TYPE)

    return router


def _ping(store: SqlStore) -> None:
    with store.engine.connect() as conn:
        conn.execute(text("SELECT 1"))


RolloutId = Annotated[str, PathParam(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")]


def _rollout_routes(service: Service) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["rollouts"])
    settings, store = service.settings, service.store

    @router.post("/rollouts", status_code=201, response_model=RolloutOut, dependencies=OPERATE)
    def start_rollout(
        body: StartRequest,
        idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", min_length=1, max_length=200,
                                                      pattern=r"^[\x21-\x7e]+$")] = None,
    ) -> dict[str, Any]:
        spec, spec_text = _spec_of(service, body.spec, body.spec_yaml)
        meta: dict[str, Any] = {"owner": OWNER, "mode": "sim" if settings.sim else "live"}
        if settings.sim:
            scenario = body.scenario or "healthy"
            if scenario not in builtin_names():
                raise ApiError(400, f"scenario: {scenario!r} is not a built-in scenario "
                                    f"(known: {', '.join(builtin_names())})")
            meta.update(scenario=scenario, seed=body.seed or 0)
        else:
            for name, value in (("scenario", body.scenario), ("seed", body.seed)):
                if value is not None:
                    raise ApiError(400, f"{name}: {value!r} is only accepted by `serve --sim`")
            if not isinstance(spec.sources.metrics, PrometheusSource) and settings.prometheus_url is None:
                raise ApiError(400, f"sources.metrics.type: {spec.sources.metrics.type!r} needs `serve --sim`; "
                                    "a live rollout reads Prometheus")
        rollout_id = f"{spec.name}-{datetime.now(UTC):%Y%m%d%H%M%S}-{secrets.token_hex(3)}"
        created = control.create_rollout(store, rollout_id, spec, spec_text, meta, idempotency_key=idempotency_key)
        if created.created:
            log.info("rollout_accepted", rollout=rollout_id, name=spec.name)
            if service.daemon is not None:
                service.daemon.nudge()
        return status_json(status(store, created.rollout_id))

    @router.get("/rollouts", response_model=RolloutList, dependencies=READ)
    def list_rollouts(
        phase: Annotated[Phase | None, Query()] = None,
        name: Annotated[str | None, Query(max_length=253)] = None,
        namespace: Annotated[str | None, Query(max_length=63)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> dict[str, Any]:
        found = statuses(store, phase=None if phase is None else phase.value, name=name, namespace=namespace,
                         limit=limit)
        return {"rollouts": [status_json(s) for s in found]}

    @router.get("/rollouts/{rollout_id}", response_model=RolloutOut, dependencies=READ)
    def get_rollout(rollout_id: RolloutId) -> dict[str, Any]:
        return status_json(status(store, rollout_id))

    @router.get("/rollouts/{rollout_id}/wait", response_model=RolloutOut, dependencies=READ)
    async def wait_rollout(
        rollout_id: RolloutId,
        timeout: Annotated[float, Query(ge=0, le=MAX_WAIT_S, description="Seconds to wait at most")] = 30.0,
    ) -> dict[str, Any]:
        """Long poll: the status once the rollout is in a terminal phase (or Paused), or when the timeout passes."""
        deadline = time.monotonic() + timeout
        while True:
            current = await run_in_threadpool(status, store, rollout_id)
            if Phase(current.summary.phase).terminal or time.monotonic() >= deadline:
                return status_json(current)
            await asyncio.sleep(min(0.25, max(0.0, deadline - time.monotonic())))

    @router.get("/rollouts/{rollout_id}/report", response_model=None, dependencies=READ,  # errors stay JSON
                responses={200: {"content": {"text/html": {"schema": {"type": "string"}}},
                                 "description": "A self-contained HTML page"}})
    def report_rollout(rollout_id: RolloutId) -> HTMLResponse:
        """One rollout as a self-contained HTML page that opens offline: the same as `canary-analyzer report`."""
        from analyzer.app.web.report import render_report  # pandas loads only when a report is asked for

        return HTMLResponse(render_report(store, rollout_id))

    @router.post("/rollouts/{rollout_id}/{command}", status_code=202, response_model=CommandOut,
                 dependencies=OPERATE)
    def command_rollout(rollout_id: RolloutId, command: Command) -> CommandOut:
        """Queue an operator command; the leader applies it at once, in a tick of its own."""
        phase = Phase(status(store, rollout_id).summary.phase)
        if phase in control.FINAL_PHASES:
            raise ApiError(409, f"{command.value}: rollout {rollout_id!r} already finished ({phase.value})")
        command_id = control.enqueue_command(store, rollout_id, command)
        log.info("command_queued", rollout=rollout_id, command=command.value)
        if service.daemon is not None:
            service.daemon.nudge()
        return CommandOut(id=command_id, rollout=rollout_id, command=command.value)

    @router.post("/judge", response_model=JudgeOut, dependencies=READ,
                 responses={424: {"model": ErrorOut, "description": "Prometheus could not be read"}})
    def judge_window(body: JudgeRequest) -> dict[str, Any]:
        """Replay a past window through the gate; the same JSON as `canary-analyzer judge --json`."""
        spec, _ = _spec_of(service, body.spec, body.spec_yaml)
        try:
            return flagger.judge_json(spec, body.start, body.end, settings=settings, canary_weight=body.canary_weight)
        except flagger.Unreachable as exc:
            raise ApiError(424, str(exc)) from None

    @router.post("/hooks/flagger", response_model=flagger.HookOut, dependencies=READ,
                 responses={412: {"model": flagger.HookOut, "description": "A regression is proven"},
                            503: {"model": ErrorOut, "description": "Concurrent calls on the release kept winning"}})
    def flagger_hook(body: flagger.FlaggerPayload, response: Response) -> flagger.HookOut:
        """Flagger webhook: 200 while the canary is not shown worse, 412 once a regression is proven."""
        names.check_label("namespace", body.namespace)
        names.check_subdomain("name", body.name)
        assert service.hooks is not None
        try:
            out = service.hooks.call(body)
        except flagger.Unreachable as exc:
            raise ApiError(424, str(exc)) from None
        except flagger.Busy as exc:
            raise ApiError(503, str(exc)) from None
        if out.verdict == "fail":
            response.status_code = 412
        return out

    return router


def _spec_of(service: Service, name: str | None, spec_yaml: str | None) -> tuple[RolloutSpec, str]:
    if (name is None) == (spec_yaml is None):
        raise ApiError(400, "body: give exactly one of spec (a name from the specs directory) and specYaml")
    if name is not None:
        return service.load_spec(name)
    assert spec_yaml is not None
    return parse_text(spec_yaml, "specYaml")
