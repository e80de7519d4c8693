"""`canary-analyzer backtest`: replay recorded rollouts under another config, from the store alone."""

from __future__ import annotations

import json
import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from analyzer.config import load_spec
from analyzer.errors import UserError

if TYPE_CHECKING:
    from analyzer.store.backtest import BacktestRun

_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([dhm])\s*$")
_UNIT = {"d": 86400.0, "h": 3600.0, "m": 60.0}


def parse_age(value: str) -> timedelta | None:
    """7d, 12h, 30m -> a timedelta; None when the text is not an age."""
    age = _AGE.match(value)
    return None if age is None else timedelta(seconds=float(age.group(1)) * _UNIT[age.group(2)])


def parse_since(value: str, now: datetime | None = None) -> datetime:
    """RFC 3339 (2026-11-01 or 2026-11-01T12:00:00Z) or an age such as 7d, 12h, 30m."""
    age = parse_age(value)
    if age is not None:
        return (now or datetime.now(UTC)) - age
    try:
        t = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise UserError(f"--since: {value!r} is neither an RFC 3339 time nor an age such as 7d, 12h or 30m") from None
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t


def command(
    config: Annotated[Path, typer.Option(help="The config to try (a rollout spec YAML)")],
    db: Annotated[str, typer.Option(help="SQLAlchemy URL of the history store")] = "sqlite:///canary-analyzer.db",
    rollout: Annotated[list[str] | None, typer.Option(help="A rollout id; repeat for several")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every recorded rollout")] = False,
    since: Annotated[str | None, typer.Option(help="Rollouts created since: RFC 3339 or an age (7d)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout")] = False,
) -> None:
    """Re-run the judge and the policy on recorded ticks with another config; no Prometheus needed."""
    if not rollout and not all_ and since is None:
        raise UserError("backtest: choose the rollouts with --rollout ID (repeatable), --all or --since T")
    cutoff = parse_since(since) if since is not None else None
    from analyzer.store.backtest import backtest  # pandas and SQLAlchemy load only for this command

    spec = load_spec(config)
    try:
        run = backtest(db, spec, rollout_ids=rollout or None, since=cutoff)
    except FileNotFoundError:
        raise UserError(f"--db: no history store at {db!r}") from None
    if as_json:
        sys.stdout.write(json.dumps(run.to_json(), indent=2, default=str) + "\n")
        return
    print_run(run, Console(soft_wrap=True), config)


def _minute(m: float | None) -> str:
    return "" if m is None else f"{m:g}"


def print_run(run: BacktestRun, console: Console, config: Path) -> None:
    table = Table(title=f"Backtest of {config}")
    for col in ("rollout", "recorded", "min", "new", "min", "first difference"):
        table.add_column(col, overflow="fold")
    for r in run.results:
        d = r.difference
        diff = "" if d is None else (f"tick {d.tick} (min {d.minute:g}): recorded {d.recorded}, new {d.new}: "
                                     f"{d.new_reason[:160]}")
        table.add_row(r.rollout_id, r.recorded_outcome, _minute(r.recorded_minute), r.new_outcome,
                      _minute(r.new_minute), diff)
    console.print(table)
    for s in run.skipped:
        console.print(f"skipped {s.rollout_id}: {s.why}", markup=False, highlight=False)
    t = run.totals
    change = t.median_change
    console.print(f"{t.rollouts} rollouts, {t.changed} with another outcome; promotions -> rollbacks "
                  f"{t.promoted_to_rolled_back}, rollbacks -> promotions {t.rolled_back_to_promoted}", markup=False)
    shift = "" if change is None else f" ({change:+g} min)"
    console.print(f"median time to decide (rollouts both configs decided): {_minute(t.recorded_median_minute) or 'n/a'}"
                  f" -> {_minute(t.new_median_minute) or 'n/a'} min{shift}", markup=False)
    if t.undecided:
        console.print(f"{t.undecided} rollouts undecided under the new config when their recording ended", markup=False)
    if t.false_rollback_rate is not None:
        console.print(f"false-rollback rate on the {t.recorded_promotions} recorded promotions: "
                      f"{100 * t.false_rollback_rate:.1f}%", markup=False)
