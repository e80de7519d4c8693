"""`canary-analyzer rollout ...`: a client of the `serve` API for pipelines.

Exit statuses: 0 promoted, 1 rolled back, 3 inconclusive or paused, 2 error. On a terminal the
progress is one live line; in CI logs (not a terminal) a plain line per tick.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.live import Live

from analyzer.app.cli.outcome import EXIT_ERROR, EXIT_PROMOTED, exit_status
from analyzer.errors import UserError
from analyzer.model import Command

rollout_app = typer.Typer(no_args_is_help=True, help="Start and steer rollouts on a `serve` instance (API client).")
out = Console(soft_wrap=True, highlight=False)

Server = Annotated[str, typer.Option(envvar="CANARY_ANALYZER_SERVER", help="Base URL of the `serve` API")]
TokenFile = Annotated[Path | None, typer.Option(
    envvar="CANARY_ANALYZER_TOKEN_FILE", help="File with the Bearer token (a bare token or `SCOPE TOKEN` lines)")]
DEFAULT_SERVER = "http://127.0.0.1:8080"


class Client:
    def __init__(self, server: str, token_file: Path | None) -> None:
        self.server = server.rstrip("/")
        token = os.environ.get("CANARY_ANALYZER_TOKEN")
        if token_file is not None:
            token = _read_token(token_file)
        if not token:
            raise UserError("--token-file: required (or CANARY_ANALYZER_TOKEN_FILE / CANARY_ANALYZER_TOKEN)")
        self._headers = {"Authorization": f"Bearer {token}"}

    def call(self, method: str, path: str, *, timeout: float = 30, **kw: Any) -> dict[str, Any]:
        headers = {**self._headers, **kw.pop("headers", {})}
        try:
            r = httpx.request(method, f"{self.server}{path}", headers=headers, timeout=timeout, **kw)
        except httpx.HTTPError as exc:
            raise UserError(f"--server: cannot reach {self.server}: {type(exc).__name__}: {exc}") from None
        try:
            body = r.json()
        except ValueError:
            body = {"error": r.text[:300]}
        if r.status_code >= 400:
            raise UserError(f"{method} {path}: HTTP {r.status_code}: {body.get('error', body)}")
        return dict(body)


def _read_token(path: Path) -> str:
    try:
        lines = [x.split() for x in path.read_text().splitlines() if x.strip() and not x.strip().startswith("#")]
    except OSError as exc:
        raise UserError(f"--token-file: cannot read {path}: {exc.strerror}") from None
    if not lines:
        raise UserError(f"--token-file: {path} holds no token")
    operate = [x[1] for x in lines if len(x) == 2 and x[0] == "operate"]
    return operate[0] if operate else lines[0][-1]


def _line(s: dict[str, Any]) -> str:
    weights = "/".join(f"{k} {v}" for k, v in s.get("weights", {}).items()) or "-"
    step = f"step {s['step'] + 1}" if s.get("step", -1) >= 0 else ""
    return (f"{s['id']}  tick {s.get('tick') if s.get('tick') is not None else '-':>3}  {s['phase']:<13} {step:<7} "
            f"{weights:<18} {s.get('decision') or ''}")


def _final(s: dict[str, Any]) -> int:
    out.print(f"{s['id']}: {s['outcome'] or s['phase']}  {s.get('reason', '')[:300]}", markup=False)
    return exit_status(s["outcome"])


def wait_for(client: Client, rollout_id: str, timeout: float, *, live: bool | None = None) -> int:
    """Long-poll until the rollout is terminal; progress live on a terminal, a plain line per tick otherwise."""
    live = sys.stdout.isatty() if live is None else live
    deadline = time.monotonic() + timeout
    last_tick: object = object()
    status: dict[str, Any] = client.call("GET", f"/v1/rollouts/{rollout_id}")
    view = Live(console=out, auto_refresh=False, transient=True) if live else None
    if view is not None:
        view.start()
    try:
        while True:
            if status.get("tick") != last_tick:
                last_tick = status.get("tick")
                if view is not None:
                    view.update(_line(status), refresh=True)
                else:
                    out.print(_line(status), markup=False)
            if status["outcome"] is not None or time.monotonic() >= deadline:
                break
            step = min(1.0, max(0.0, deadline - time.monotonic()))  # a progress line at least each second
            status = client.call("GET", f"/v1/rollouts/{rollout_id}/wait", params={"timeout": step},
                                 timeout=step + 30)
    finally:
        if view is not None:
            view.stop()
    if status["outcome"] is None:
        out.print(f"{rollout_id}: still {status['phase']} after {timeout:g}s", markup=False)
    return _final(status)


@rollout_app.command("start")
def start(
    spec: Annotated[str | None, typer.Argument(help="Spec name in the server's specs directory")] = None,
    spec_file: Annotated[Path | None, typer.Option(help="Send this spec file instead of a name")] = None,
    scenario: Annotated[str | None, typer.Option(help="serve --sim only: built-in scenario")] = None,
    seed: Annotated[int | None, typer.Option(help="serve --sim only: simulation seed")] = None,
    idempotency_key: Annotated[str | None, typer.Option(
        envvar="CANARY_ANALYZER_IDEMPOTENCY_KEY", help="A retry with this key returns the first rollout")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Wait for the outcome; exit with its status")] = False,
    timeout: Annotated[float, typer.Option(help="With --wait: seconds to wait at most")] = 3600,
    server: Server = DEFAULT_SERVER,
    token_file: TokenFile = None,
) -> None:
    """Start a rollout; print its id (with --wait, follow it to the end)."""
    client = Client(server, token_file)
    body: dict[str, Any] = {}
    if spec_file is not None:
        try:
            body["specYaml"] = spec_file.read_text()
        except OSError as exc:
            raise UserError(f"--spec-file: cannot read {spec_file}: {exc.strerror}") from None
    if spec is not None:
        body["spec"] = spec
    body.update({k: v for k, v in (("scenario", scenario), ("seed", seed)) if v is not None})
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    status = client.call("POST", "/v1/rollouts", json=body, headers=headers)
    out.print(status["id"], markup=False)
    if wait:
        raise typer.Exit(wait_for(client, status["id"], timeout))


@rollout_app.command("status")
def status_(
    rollout_id: Annotated[str, typer.Argument()],
    as_json: Annotated[bool, typer.Option("--json")] = False,
    server: Server = DEFAULT_SERVER,
    token_file: TokenFile = None,
) -> None:
    """The rollout's status; exit status by its outcome (3 while it runs)."""
    s = Client(server, token_file).call("GET", f"/v1/rollouts/{rollout_id}")
    if as_json:
        sys.stdout.write(json.dumps(s, indent=2) + "\n")
    else:
        out.print(_line(s), markup=False)
        for v in s["final_verdicts"]:
            out.print(f"  {v['verdict']:<9} {v['reason']}", markup=False)
    raise typer.Exit(exit_status(s["outcome"]))


@rollout_app.command("wait")
def wait_(
    rollout_id: Annotated[str, typer.Argument()],
    timeout: Annotated[float, typer.Option(help="Seconds to wait at most")] = 3600,
    server: Server = DEFAULT_SERVER,
    token_file: TokenFile = None,
) -> None:
    """Follow a rollout to its end: exit 0 promoted, 1 rolled back, 3 inconclusive or paused, 2 error."""
    raise typer.Exit(wait_for(Client(server, token_file), rollout_id, timeout))


def _command(command: Command) -> Any:
    def run(
        rollout_id: Annotated[str, typer.Argument()],
        server: Server = DEFAULT_SERVER,
        token_file: TokenFile = None,
    ) -> None:
        Client(server, token_file).call("POST", f"/v1/rollouts/{rollout_id}/{command.value}")
        out.print(f"{rollout_id}: {command.value} accepted; the leader applies it at its next tick", markup=False)
        raise typer.Exit(EXIT_PROMOTED)

    run.__doc__ = f"Ask the leader to {command.value} the rollout (exit 0 when accepted, 2 on error)."
    return run


for _c in Command:
    rollout_app.command(_c.value)(_command(_c))

__all__ = ["EXIT_ERROR", "rollout_app"]
