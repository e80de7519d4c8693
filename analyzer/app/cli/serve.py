"""`canary-analyzer serve`: the in-cluster service (daemon + HTTP API). SIGTERM finishes running ticks, exits 0."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Annotated, Any

import typer

from analyzer.app import logs
from analyzer.app.settings import ENV_PREFIX, SettingsError, host_port, load_settings, load_tokens

_ENV = f"(env {ENV_PREFIX}NAME)"


def serve(
    config: Annotated[Path | None, typer.Option(help="YAML file of settings (names as below, snake_case)")] = None,
    db: Annotated[str | None, typer.Option(help=f"SQLAlchemy URL of the store {_ENV}")] = None,
    listen: Annotated[str | None, typer.Option(help="HOST:PORT of the HTTP API (default 127.0.0.1:8080)")] = None,
    token_file: Annotated[Path | None, typer.Option(help="Bearer tokens, lines `SCOPE TOKEN` (read, operate)")] = None,
    specs: Annotated[Path | None, typer.Option(help="Directory of rollout specs, by file name without .yaml")] = None,
    sim: Annotated[bool | None, typer.Option("--sim/--no-sim", help="Run rollouts on the simulated mesh")] = None,
    sim_speed: Annotated[float | None, typer.Option(help="With --sim: simulated seconds per real second")] = None,
    leader_election: Annotated[bool | None, typer.Option(
        "--leader-election/--no-leader-election", help="Only the lease holder ticks (default on)")] = None,
    identity: Annotated[str | None, typer.Option(help="Name in the lease (POD_NAME or host-pid)")] = None,
    lease: Annotated[str | None, typer.Option(help="store (a row, default) or kubernetes (a Lease)")] = None,
    leader_election_namespace: Annotated[str | None, typer.Option(
        help="Shorthand for --lease kubernetes with the Lease in this namespace")] = None,
    kubeconfig: Annotated[str | None, typer.Option(help="Cluster whose VirtualServices rollouts drive")] = None,
    in_cluster: Annotated[bool | None, typer.Option(
        "--in-cluster/--no-in-cluster", help="Use the pod's service account (default: inside a pod)")] = None,
    lease_ttl: Annotated[float | None, typer.Option(help="Seconds a leader holds the lease unrenewed (15)")] = None,
    max_concurrent_ticks: Annotated[int | None, typer.Option(help="Ticks running at once (4)")] = None,
    poll: Annotated[float | None, typer.Option(help="Seconds between looks for new rollouts and commands (1)")] = None,
    max_body_bytes: Annotated[int | None, typer.Option(help="Largest request body accepted (1000000)")] = None,
    prometheus_url: Annotated[str | None, typer.Option(help="Overrides each spec's sources.metrics.url")] = None,
    jaeger_url: Annotated[str | None, typer.Option(help="Overrides each spec's sources.traces.url")] = None,
    log_level: Annotated[str | None, typer.Option("--serve-log-level", help="debug, info, warning, error")] = None,
) -> None:
    """Run the service: the scheduler ticks active rollouts, the HTTP API serves pipelines and operators.

    Every setting also comes from the --config file and from CANARY_ANALYZER_<NAME> (e.g. CANARY_ANALYZER_DB);
    flags win over the environment, which wins over the file.
    """
    flags: dict[str, Any] = {k: v for k, v in locals().items() if k != "config"}
    settings = load_settings(config, flags)
    if settings.token_file is None:
        raise SettingsError("--token-file: required (lines `SCOPE TOKEN`, scopes read and operate); "
                            f"or set {ENV_PREFIX}TOKEN_FILE")
    tokens = load_tokens(settings.token_file)
    if settings.specs is not None and not Path(settings.specs).is_dir():
        raise SettingsError(f"--specs: {str(settings.specs)!r} is not a directory")
    host, port = host_port(settings.listen)
    logs.configure(settings.log_level)

    import uvicorn

    from analyzer.app import wiring
    from analyzer.app.api import Service, create_app
    from analyzer.app.daemon import Daemon
    from analyzer.store.sql import SqlStore

    store = wiring.open_store(settings.db)
    assert isinstance(store, SqlStore)
    daemon = Daemon(settings, store)
    app = create_app(Service(settings=settings, store=store, tokens=tokens, daemon=daemon))
    # uvicorn re-raises the signal it shut down on once it is done; a quiet handler makes that a clean exit 0.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False, lifespan="on",
                timeout_graceful_shutdown=30)
    store.close()
