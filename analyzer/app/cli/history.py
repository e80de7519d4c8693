"""`history list` and `history show`: the store's history API rendered for a terminal or as JSON."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from typing import Any

from rich.console import Console
from rich.table import Table

from analyzer.errors import UserError
from analyzer.store.history import NoHistoryStore, RolloutDetail, StoreUnusable, list_rollouts, rollout_detail
from analyzer.traces import finding_lines, findings_in


def _json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


@contextmanager
def _db_option(url: str) -> Iterator[None]:
    """Store errors name the --db option."""
    try:
        yield
    except NoHistoryStore as exc:
        raise UserError(f"--db: {exc}; run `canary-analyzer demo` first, or pass --db") from None
    except StoreUnusable as exc:
        raise UserError(f"--db: {exc}") from None


def _read(url: str, read: Callable[[], Any]) -> Any:
    with _db_option(url):
        return read()


def print_history_list(url: str, *, name: str | None, limit: int, as_json: bool, console: Console) -> None:
    rows = _read(url, lambda: list_rollouts(url, name=name, limit=limit))
    if as_json:
        _json([asdict(r) for r in rows])
        return
    table = Table(title=f"Rollouts in {url}")
    table.add_column("id", no_wrap=True)  # an id is copied into `history show`: keep it whole
    for col in ("label", "name", "created", "outcome", "decision min", "steps", "max weight", "ticks"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(r.id, "" if r.label == r.id else r.label, r.name, f"{r.created_at:%Y-%m-%d %H:%M}",
                      r.outcome or r.phase,
                      "" if r.decision_minutes is None else f"{r.decision_minutes:g}", str(r.steps_reached),
                      "" if r.max_canary_weight is None else str(r.max_canary_weight), str(r.ticks))
    console.print(table)


def _detail_json(d: RolloutDetail) -> dict[str, Any]:
    from analyzer.app.simulation import verdict_json

    return {
        "summary": asdict(d.summary),
        "timeline": [
            {**{k: v for k, v in asdict(t).items() if k != "actions"},
             "actions": [{"action": type(a.action).__name__, **asdict(a.action), "ok": a.ok, "error": a.error}
                         for a in t.actions]}
            for t in d.timeline
        ],
        "final_verdicts": [verdict_json(v) for v in d.final_verdicts],
        "events": [asdict(e) for e in d.events],
        "traces": d.traces,  # None: the rollout had no trace source
    }


def print_history_show(url: str, rollout_id: str, *, as_json: bool, console: Console) -> None:
    d = _read(url, lambda: rollout_detail(url, rollout_id))
    if as_json:
        _json(_detail_json(d))
        return
    s = d.summary
    label = "" if s.label == s.id else f"{s.label}, "
    console.print(f"[bold]{s.id}[/] ({label}{s.name}, {s.namespace}): {s.outcome or s.phase}"
                  + ("" if s.decision_minutes is None else f" at minute {s.decision_minutes:g}"))
    table = Table(title="Timeline")
    for col in ("tick", "phase", "step", "weights", "canary req/err", "baseline req/err", "decision", "reason"):
        table.add_column(col, overflow="fold")
    for t in d.timeline:
        table.add_row(str(t.tick), t.phase, str(t.step + 1) if t.step >= 0 else "",
                      "/".join(str(v) for v in t.weights.values()),
                      "" if t.canary_requests is None else f"{t.canary_requests}/{t.canary_errors}",
                      "" if t.baseline_requests is None else f"{t.baseline_requests}/{t.baseline_errors}",
                      t.decision, t.reason[:160])
    console.print(table)
    if d.final_verdicts:
        console.print(f"[bold]Verdicts at tick {d.final_verdicts_tick}[/]")
        for v in d.final_verdicts:
            console.print(f"  {v.verdict.value:<9} {v.reason}", markup=False)
    traces = d.traces
    if traces is not None:
        head = f"{traces['canary_traces']} canary vs {traces['baseline_traces']} baseline traces"
        found = findings_in(d.trace_verdicts)
        console.print(f"[bold]Trace findings[/] ({head}{'' if found else '; none'})")
        for line in finding_lines(found):
            console.print(line, markup=False)
    if d.events:
        console.print("[bold]Events[/]")
        for e in d.events:
            console.print(f"  tick {e.tick:>3} {e.kind:<18} {e.message[:200]}", markup=False)
