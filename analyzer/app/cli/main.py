"""The `canary-analyzer` command line. A user's mistake prints one clear message and exits 2, never a traceback."""

from __future__ import annotations

import json
import math
import sys
import traceback
from pathlib import Path
from typing import Annotated, Any

import typer

from analyzer.app import logs, outputs, wiring
from analyzer.app.cli import backtest as backtest_cli
from analyzer.app.cli import report as report_cli
from analyzer.app.cli import store as store_cli
from analyzer.app.cli.importer import import_app
from analyzer.config import load_spec, load_spec_text
from analyzer.errors import UserError
from analyzer.sim.scenario import builtin_names, load_scenario

ROOT = Path(__file__).resolve().parents[3]
DEFAULT_CONFIG = ROOT / "config" / "examples" / "reviews.yaml"
DEFAULT_DB = "sqlite:///canary-analyzer.db"

EXIT_USAGE, EXIT_INTERNAL, EXIT_INTERRUPTED = 2, 70, 130  # 70 = EX_SOFTWARE (sysexits.h)

# Typer vendors its own click (typer._click); its public BadParameter leads to the classes it raises.
_USAGE_ERROR: type[Exception] = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")


class _NeverRaised(Exception):
    pass


_NO_ARGS: type[Exception] = getattr(sys.modules[typer.BadParameter.__module__], "NoArgsIsHelpError", _NeverRaised)

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Automated canary analysis for Istio.")
history_app = typer.Typer(no_args_is_help=True, help="Past rollouts recorded in the store.")
app.add_typer(history_app, name="history")
app.add_typer(import_app, name="import")
err = outputs.console(stderr=True)
out = outputs.console()
if not out.is_terminal:  # a pipe or a file: tables keep their natural width instead of wrapping at 80 columns
    out.width = 10_000


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def _open_store(url: str) -> Any:
    from analyzer.store.sql import StoreUnusable

    try:
        return wiring.open_store(url)
    except StoreUnusable as exc:
        raise UserError(f"--db: {exc}") from None


@app.command()
def validate(files: Annotated[list[Path], typer.Argument(help="Rollout spec YAML files")]) -> None:
    """Check rollout specs; report every problem with its field and value."""
    bad = 0
    for f in files:
        try:
            spec = load_spec(f)
            out.print(f"{f}: ok (rollout {spec.name!r}, {spec.strategy.type}, steps {spec.strategy.weights})")
        except UserError as exc:
            bad += 1
            err.print(str(exc), markup=False, highlight=False)
    if bad:
        raise typer.Exit(2)


@app.command()
def demo(
    config: Annotated[Path, typer.Option(help="Rollout spec")] = DEFAULT_CONFIG,
    scenario: Annotated[str, typer.Option(help=f"Built-in name ({', '.join(builtin_names())}) or a YAML file")] = (
        "healthy"),
    seed: Annotated[int, typer.Option(min=0, help="Simulation seed")] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout")] = False,
    db: Annotated[str, typer.Option(help="SQLAlchemy URL of the history store")] = DEFAULT_DB,
    load: Annotated[float | None, typer.Option(help="Synthetic load in rps during the analysis (overrides load.rps)")
                    ] = None,
    kubeconfig: Annotated[Path | None, typer.Option(
        help="Drive the spec's real VirtualService (and Deployments, Events) in this cluster; metrics stay "
             "simulated")] = None,
    context: Annotated[str | None, typer.Option(help="kubeconfig context (implies --kubeconfig's default)")] = None,
) -> None:
    """Run one whole rollout on the simulated mesh, in virtual time."""
    from analyzer.app.cli.demo import run_demo, with_load

    spec, text = load_spec_text(config)
    if load is not None:
        spec = with_load(spec, load)
    settings = wiring.Settings(db=db, kubeconfig=None if kubeconfig is None else str(kubeconfig),
                               kube_context=context)
    kube = wiring.cluster(settings) if settings.cluster else None
    result = run_demo(spec, text, load_scenario(scenario), seed=seed, store=_open_store(db), live=not as_json,
                      adapters=kube)
    if as_json:
        _print_json(result.to_json())


@app.command()
def simulate(
    config: Annotated[Path, typer.Option(help="Rollout spec")] = DEFAULT_CONFIG,
    scenario: Annotated[str, typer.Option(help="Built-in name or a YAML file")] = "healthy",
    runs: Annotated[int, typer.Option(min=1, help="Number of rollouts")] = 100,
    seed: Annotated[int, typer.Option(min=0, help="First seed")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout")] = False,
) -> None:
    """Run many rollouts and report outcome counts and decision-time quantiles."""
    from analyzer.app.simulation import run_many

    spec = load_spec(config)
    summary = run_many(spec, load_scenario(scenario), runs=runs, seed=seed)
    if as_json:
        _print_json(summary.to_json())
        return
    out.print(f"{runs} rollouts of {spec.name!r} on scenario {scenario!r}")
    for name, count in summary.outcomes.items():
        if count:
            out.print(f"  {name:<13} {count:>5}  ({100 * count / runs:.1f}%)")
    q = summary.decision_minutes
    out.print(f"  decision minute: p10 {q['p10']}, median {q['p50']}, p90 {q['p90']}")


@app.command()
def plan(
    config: Annotated[Path, typer.Argument(help="Rollout spec")],
    rps: Annotated[float, typer.Option(help="Total requests per second to the service")] = 50.0,
    baseline_error_rate: Annotated[float, typer.Option(help="Baseline error rate, e.g. 0.005")] = 0.005,
    latency_p99_ms: Annotated[float, typer.Option(help="Baseline p99 latency in ms")] = 250.0,
    budget: Annotated[str | None, typer.Option(help="Time budget, e.g. 30m (overrides timing.budget)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout")] = False,
) -> None:
    """Before a rollout: what this config can detect, how long it needs, and the load to add if too little."""
    from analyzer.app.cli.plan import plan_lines, with_budget
    from analyzer.plan import make_plan

    for option, value, ok, want in (
        ("--rps", rps, rps > 0, "a positive number"),
        ("--baseline-error-rate", baseline_error_rate, 0 <= baseline_error_rate < 1, "a rate in [0, 1)"),
        ("--latency-p99-ms", latency_p99_ms, latency_p99_ms > 0, "a positive number of milliseconds"),
    ):
        if not (math.isfinite(value) and ok):  # NaN compares false with everything: test it first
            raise UserError(f"plan: {option}: {value:g} is not {want}")
    spec = load_spec(config)
    if budget is not None:
        spec = with_budget(spec, budget)
    report = make_plan(spec, rps=rps, baseline_error_rate=baseline_error_rate,
                       latency_p99_ms=latency_p99_ms)
    if as_json:
        _print_json(report.to_json())
    else:
        for line in plan_lines(report):
            out.print(line, markup=False, highlight=False)


@app.command(name="judge")
def judge_window(
    config: Annotated[Path, typer.Argument(help="Rollout spec (target, metrics, Prometheus source)")],
    start: Annotated[str, typer.Option(help="Window start: RFC 3339 or unix seconds")],
    end: Annotated[str, typer.Option(help="Window end: RFC 3339 or unix seconds")],
    prometheus_url: Annotated[str | None, typer.Option(help="Overrides sources.metrics.url")] = None,
    jaeger_url: Annotated[str | None, typer.Option(
        help="Overrides sources.traces.url (a Jaeger query service); adds trace findings")] = None,
    canary_weight: Annotated[int | None, typer.Option(
        min=1, max=99, help="Canary traffic % during the window; enables the sample-ratio check")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout")] = False,
    max_window: Annotated[str, typer.Option(help="Refuse a longer window (e.g. 6h, 1d, 7d)")] = "1d",
) -> None:
    """Replay a past window through the gate from Prometheus: exit 0 pass, 1 fail, 3 inconclusive, 2 error."""
    from analyzer.app.cli.judge import judge_command

    code = judge_command(load_spec(config), start, end, prometheus_url=prometheus_url, as_json=as_json,
                         canary_weight=canary_weight, jaeger_url=jaeger_url, max_window=max_window)
    raise typer.Exit(code)


@history_app.command("list")
def history_list(
    db: Annotated[str, typer.Option(help="SQLAlchemy URL of the history store")] = DEFAULT_DB,
    name: Annotated[str | None, typer.Option(help="Only this rollout name")] = None,
    limit: Annotated[int, typer.Option(min=1)] = 50,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Recorded rollouts, newest first."""
    from analyzer.app.cli.history import print_history_list

    print_history_list(db, name=name, limit=limit, as_json=as_json, console=out)


@history_app.command("show")
def history_show(
    rollout_id: Annotated[str, typer.Argument(help="Rollout id from `history list`")],
    db: Annotated[str, typer.Option(help="SQLAlchemy URL of the history store")] = DEFAULT_DB,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """One rollout: its timeline of ticks, decisions, verdicts and events."""
    from analyzer.app.cli.history import print_history_show

    print_history_show(db, rollout_id, as_json=as_json, console=out)


app.command("backtest")(backtest_cli.command)
app.command("report")(report_cli.command)
app.add_typer(store_cli.db_app, name="db")
history_app.command("export")(store_cli.export)


@app.callback()
def _root(
    log_level: Annotated[str, typer.Option(help=f"{', '.join(logs.LEVELS)}")] = "warning",
) -> None:
    if log_level.lower() not in logs.LEVELS:
        raise UserError(f"--log-level: {log_level!r} is not one of {', '.join(logs.LEVELS)}")
    logs.configure(log_level)


from analyzer.app.cli import serve as _serve  # noqa: E402  (commands in their own modules, one line each)
from analyzer.app.cli.rollout import rollout_app  # noqa: E402

app.command("serve")(_serve.serve)
app.add_typer(rollout_app, name="rollout")


@app.command("run")
def run(
    config: Annotated[Path, typer.Argument(help="Rollout spec (target, steps, Prometheus source)")],
    wait: Annotated[bool, typer.Option("--wait", help="Through a pause, wait for an operator command")] = False,
    db: Annotated[str, typer.Option(help="SQLAlchemy URL of the history store")] = DEFAULT_DB,
    prometheus_url: Annotated[str | None, typer.Option(help="Overrides sources.metrics.url")] = None,
    jaeger_url: Annotated[str | None, typer.Option(help="Overrides sources.traces.url")] = None,
) -> None:
    """One rollout in this process, no server: exit 0 promoted, 1 rolled back, 3 inconclusive or paused, 2 error."""
    from analyzer.app.cli.run import run_rollout_here
    from analyzer.store.sql import SqlStore

    spec, text = load_spec_text(config)
    store = wiring.open_store(db)
    assert isinstance(store, SqlStore)
    settings = wiring.Settings(db=db, prometheus_url=prometheus_url, jaeger_url=jaeger_url)
    raise typer.Exit(run_rollout_here(spec, text, store=store, settings=settings, wait=wait, console=out))


def main(argv: list[str] | None = None) -> int:
    """Entry point. Exit status: 0 ok, 1 `judge` fail, 2 the user's mistake (one line on stderr),
    3 `judge` inconclusive, 70 an internal error (a bug), 130 interrupted."""
    outputs.tolerant_streams()
    try:
        rc = app(args=argv, standalone_mode=False, prog_name="canary-analyzer")
    except UserError as exc:
        return _user_error(str(exc))
    except _NO_ARGS as exc:  # `canary-analyzer` (or a group) alone: the help, and exit 2
        sys.stdout.write(exc.format_message().rstrip() + "\n")
        return _user_error("a command is required (see the list above)")
    except _USAGE_ERROR as exc:  # typer's own click: bad or missing options, unknown commands
        ctx = getattr(exc, "ctx", None)
        command = ctx.command_path if ctx is not None else "canary-analyzer"
        return _user_error(f"{exc.format_message()}{_given(exc)} (see `{command} --help`)")
    except typer.TyperException as exc:  # other click errors, e.g. a file option that cannot be opened
        return _user_error(exc.format_message())
    except typer.Exit as exc:
        return exc.exit_code
    except (typer.Abort, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    except Exception as exc:  # anything else is our bug, not the user's mistake
        return _internal_error(exc)
    return rc if isinstance(rc, int) else 0


def _user_error(message: str) -> int:
    # Several problems (one spec, many fields) stay on several lines; one problem is one line.
    lines = [" ".join(line.split()) for line in message.strip().splitlines() if line.strip()] or ["unknown error"]
    if not lines[0].startswith("error:"):
        lines[0] = "error: " + lines[0]
    sys.stderr.write("\n".join(lines) + "\n")
    return EXIT_USAGE


def _given(exc: BaseException) -> str:
    """', got VALUE' when typer's message (pydantic's first error) does not show the value the user gave."""
    errors = getattr(exc.__cause__, "errors", None)
    if not callable(errors):
        return ""
    try:
        value = errors()[0].get("input")
    except (IndexError, TypeError):
        return ""
    return "" if value is None or repr(value) in str(exc) else f", got {value!r}"


def _internal_error(exc: BaseException) -> int:
    if logs.debug_enabled():
        traceback.print_exception(exc, file=sys.stderr)
    what = " ".join(str(exc).split())[:300]
    sys.stderr.write(f"internal error (a bug in canary-analyzer, please report it): {type(exc).__name__}"
                     f"{': ' + what if what else ''}; rerun with --log-level debug for the traceback\n")
    return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
