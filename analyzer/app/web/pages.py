"""The dashboard's HTML: whole pages and the live sections that Server-Sent Events replace in place.

Every value from a spec, a label, a reason or an event goes through `escape` (or the chart helpers,
which escape their own text). Nothing inline runs: the one script and the one stylesheet are files
the app serves, and the Content-Security-Policy allows nothing else.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import datetime
from html import escape
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import yaml

from analyzer.app.web.board import CommandState, Row, closeness
from analyzer.app.web.charts import BASELINE, CANARY, PALETTE, Rule, Series, line_chart
from analyzer.app.web.report import _minutes, _values, metric_charts
from analyzer.app.web.session import Session
from analyzer.model import Command, MetricVerdict, Phase
from analyzer.store.history import RolloutDetail

if TYPE_CHECKING:
    import pandas as pd

COMMANDS = (Command.PROMOTE, Command.PAUSE, Command.RESUME, Command.ABORT)
COMMAND_WORDS = {
    Command.PROMOTE: "send all traffic to the canary and finish",
    Command.PAUSE: "hold the current weights; no automatic decision until resumed",
    Command.RESUME: "continue the analysis from where it was paused",
    Command.ABORT: "send all traffic back to the baseline and stop",
}


def e(value: object) -> str:
    return escape("" if value is None else str(value))


def _num(v: float | None, fmt: str = ".3g") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, float) and math.isinf(v):
        return "∞"
    return format(v, fmt)


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min"


def when(t: datetime | None) -> str:
    return "" if t is None else f"{t:%Y-%m-%d %H:%M:%S} UTC"


# ---- the frame of every page ----


def page(title: str, body: str, *, session: Session | None, csrf: str = "", live: str = "") -> str:
    nav = ""
    if session is not None:
        nav = ('<nav aria-label="Main"><a href="/">Rollouts</a> <a href="/plan">Plan</a> '
               f'<span class="scope">signed in: {e(session.scope)}</span> '
               '<form method="post" action="/logout" class="inline">'
               f'<input type="hidden" name="csrf" value="{e(csrf)}"><button type="submit">Sign out</button></form>'
               "</nav>")
    live_attr = f' data-live="{e(live)}"' if live else ""
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{e(title)} · Canary Analyzer</title>"
        '<link rel="stylesheet" href="/static/dashboard.css">'
        '<script src="/static/dashboard.js" defer></script></head>'
        f'<body{live_attr}><header>{nav}</header><main>{body}</main>'
        '<footer><p class="muted" id="live-status" aria-live="polite"></p></footer></body></html>'
    )


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], *, raw: bool = False, cls: str = "") -> str:
    """A table; cells are escaped unless `raw` (then the caller escaped them)."""
    head = "".join(f'<th scope="col">{e(h)}</th>' for h in headers)
    cell = (lambda c: c) if raw else e
    body = "".join("<tr>" + "".join(f"<td>{cell(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{e(cls)}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


# ---- sign-in ----


def login_page(form_token: str, next_path: str, error: str = "") -> str:
    err = f'<p class="error" role="alert">{e(error)}</p>' if error else ""
    body = (
        "<h1>Sign in</h1>"
        "<p>Paste an API token from the service's token file. A <code>read</code> token shows the rollouts; "
        "an <code>operate</code> token can also promote, pause, resume and abort them.</p>"
        f"{err}"
        '<form method="post" action="/login">'
        f'<input type="hidden" name="csrf" value="{e(form_token)}">'
        f'<input type="hidden" name="next" value="{e(next_path)}">'
        '<p><label for="token">API token</label> '
        '<input type="password" id="token" name="token" autocomplete="off" required autofocus></p>'
        '<p><button type="submit">Sign in</button></p></form>'
    )
    return page("Sign in", body, session=None)


# ---- the rollout list ----


def _weight_cell(r: Row) -> str:
    w = r.canary_weight
    if w is None:
        return '<span class="muted">–</span>'
    return (f'<meter min="0" max="100" value="{w}" aria-label="canary weight">{w}%</meter> '
            f'<span class="weight">{w}%</span>')


def _evidence(v: MetricVerdict | None) -> str:
    if v is None:
        return '<span class="muted">no evidence yet</span>'
    near = closeness(v)
    cls = "hot" if near >= 0.5 else ""
    return (f'<span class="{cls}">{e(v.metric)}: {e(_num(v.e_value))} of {e(_num(v.threshold))}</span>')


def _phase(r: Row) -> str:
    s = r.status
    step = f" · step {s.step + 1}" if s.step >= 0 else ""
    return f'<span class="phase {e(s.summary.phase)}">{e(s.summary.phase)}</span>{e(step)}'


def _target(s: Any) -> str:
    vs = (s.spec.get("target") or {}).get("virtualService")
    return f"{e(s.summary.namespace)} / {e(vs)}"


def active_section(rows: list[Row]) -> str:
    active = [r for r in rows if not r.finished]
    if not active:
        return '<p class="muted">No active rollout.</p>'
    body = []
    for r in active:
        s = r.status
        body.append((
            f'<a href="/rollouts/{e(s.summary.id)}">{e(s.summary.name)}</a><br>'
            f'<span class="muted small">{e(s.summary.id)}</span>',
            _target(s), _phase(r), _weight_cell(r), _evidence(r.leading), e(duration(r.in_step_s)),
            f'<span class="reason">{e(r.reason)}</span>',
        ))
    return table(("Rollout", "Target (namespace / VirtualService)", "Phase and step", "Canary weight",
                  "Leading evidence / threshold", "Time in step", "Last decision's reason"), body, raw=True,
                 cls="rollouts")


def finished_section(rows: list[Row]) -> str:
    done = [r for r in rows if r.finished]
    if not done:
        return '<p class="muted">No finished rollout.</p>'
    body = []
    for r in done:
        s = r.status
        m = s.summary.decision_minutes
        body.append((
            f'<a href="/rollouts/{e(s.summary.id)}">{e(s.summary.name)}</a><br>'
            f'<span class="muted small">{e(s.summary.id)}</span>',
            _target(s), f'<span class="outcome {e(s.summary.outcome)}">{e(s.summary.outcome)}</span>',
            e("–" if m is None else f"{m:.1f}"), f'<span class="reason">{e(r.reason)}</span>',
        ))
    return table(("Rollout", "Target (namespace / VirtualService)", "Outcome", "Decision minute", "Reason"),
                 body, raw=True, cls="rollouts")


def _select(name: str, label: str, options: Sequence[str], chosen: str | None) -> str:
    opts = ['<option value="">any</option>'] + [
        f'<option value="{e(o)}"{" selected" if o == chosen else ""}>{e(o)}</option>' for o in options]
    return (f'<label for="f-{e(name)}">{e(label)}</label> '
            f'<select id="f-{e(name)}" name="{e(name)}">{"".join(opts)}</select>')


def list_page(rows: list[Row], *, session: Session, csrf: str, phase: str | None, namespace: str | None,
              namespaces: Sequence[str], live: str) -> str:
    filters = (
        '<form method="get" action="/" class="filters" aria-label="Filters">'
        f"{_select('phase', 'Phase', [p.value for p in Phase], phase)} "
        f"{_select('namespace', 'Namespace', namespaces, namespace)} "
        '<button type="submit">Filter</button></form>'
    )
    body = (
        "<h1>Rollouts</h1>" + filters
        + '<h2>Active</h2><div id="live-active">' + active_section(rows) + "</div>"
        + '<h2>Finished</h2><div id="live-finished">' + finished_section(rows) + "</div>"
    )
    return page("Rollouts", body, session=session, csrf=csrf, live=live)


# ---- one rollout ----


def weight_timeline(ticks: pd.DataFrame, steps: Sequence[int], header: bool) -> str:
    xs = list(ticks["minute"])
    canary = _values(ticks["canary_weight"])
    series = [Series("canary weight %", list(zip(xs, canary, strict=True)), CANARY, step=True)]
    if header:
        testers = [0.0 if bool(h) else None for h in ticks["header_route"]]
        series.append(Series("header phase (testers only)", list(zip(xs, testers, strict=True)), PALETTE[4]))
    rules = [Rule(float(w), f"step {i + 1}: {w}%", "#bbbbbb") for i, w in enumerate(steps)]
    return line_chart(series, title="Weight timeline", y_label="% of traffic", y_min=0.0, rules=rules)


def _side_value(d: Any) -> tuple[str, float | None]:
    """The per-interval value a verdict records for one side: a rate, else the first number it has."""
    if not isinstance(d, dict):
        return "", None
    for key in ("rate", "error_rate", "exceedance", "p95", "p99", "mean"):
        v = d.get(key)
        if isinstance(v, int | float) and math.isfinite(v):
            return key, float(v)
    for key, v in d.items():
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
            return str(key), float(v)
    return "", None


def sides_chart(metric: str, rows: pd.DataFrame) -> str | None:
    """Canary against baseline, per interval, for one metric."""
    xs = list(rows["minute"])
    canary = [_side_value(d) for d in rows["canary"]]
    baseline = [_side_value(d) for d in rows["baseline"]]
    key = next((k for k, v in canary if v is not None), "")
    if not key:
        return None
    return line_chart([
        Series("canary", [(x, v if k == key else None) for x, (k, v) in zip(xs, canary, strict=True)], CANARY),
        Series("baseline", [(x, v if k == key else None) for x, (k, v) in zip(xs, baseline, strict=True)], BASELINE),
    ], title=f"{metric}: canary vs baseline per interval ({key})", y_label=key, y_min=0.0)


def charts_section(ticks: pd.DataFrame, verdicts: pd.DataFrame, spec: dict[str, Any]) -> str:
    strategy = spec.get("strategy") or {}
    steps = [int(s) for s in strategy.get("steps") or [] if isinstance(s, int | float)]
    if ticks.empty:
        return '<p class="muted">No tick yet.</p>'
    out = [weight_timeline(ticks, steps, bool(strategy.get("headerPhase")))]
    metrics = {m.get("name"): m for m in (spec.get("analysis") or {}).get("metrics") or [] if isinstance(m, dict)}
    if not verdicts.empty:
        joined = _minutes(verdicts, ticks)
        joined = joined[joined["minute"].notna()]  # a tick recorded after `ticks` was read: next update
        for metric, rows in joined.groupby("metric", sort=False):
            if not bool(rows["gate"].iloc[-1]):
                continue
            sides = sides_chart(str(metric), rows)
            out += [sides] if sides else []
            out += metric_charts(str(metric), rows, (metrics.get(metric) or {}).get("tolerance"))
    return '<div class="charts">' + "".join(out) + "</div>"


def commands_section(rollout_id: str, phase: str, session: Session) -> str:
    if not session.can_operate:
        return ""
    if Phase(phase) in (Phase.SUCCEEDED, Phase.ROLLED_BACK, Phase.FAILED, Phase.ABORTED):
        return ""
    forms = "".join(
        f'<form method="get" action="/rollouts/{e(rollout_id)}/confirm" class="inline">'
        f'<input type="hidden" name="command" value="{e(c.value)}">'
        f'<button type="submit" class="cmd {e(c.value)}">{e(c.value.capitalize())}</button></form> '
        for c in COMMANDS)
    return f'<h2>Commands</h2><div class="commands">{forms}</div>'


def command_result(state: CommandState | None) -> str:
    if state is None:
        return ""
    name = state.command.capitalize()
    if state.tick is None:
        text, cls = f"{name}: queued; waiting for the leader to apply it…", "pending"
    elif state.tick < 0:
        text, cls = f"{name}: not applied, the rollout had already finished.", "failed"
    else:
        text, cls = f"{name}: applied at tick {state.tick}; phase now {state.phase}. {state.reason}", "applied"
    return f'<p class="command-result {cls}" id="command-result" role="status">{e(text)}</p>'


def head_section(detail: RolloutDetail, row: Row | None, spec: dict[str, Any],
                 command: CommandState | None) -> str:
    s = detail.summary
    t = spec.get("target") or {}
    last = detail.timeline[-1] if detail.timeline else None
    weight = None if row is None else row.canary_weight
    step = "" if last is None or last.step < 0 else f"step {last.step + 1}"
    subsets = {side: (t.get(side) or {}).get("subset") for side in ("baseline", "canary")}
    items = [
        ("Target", f"{t.get('namespace')} / VirtualService {t.get('virtualService')} "
                   f"(baseline {subsets['baseline']}, canary {subsets['canary']})"),
        ("Phase", f"{s.phase} {step}".strip()),
        ("Outcome", s.outcome or "running"),
        ("Time in step", duration(None if row is None else row.in_step_s)),
        ("Ticks", str(s.ticks)),
        ("Decision minute", "–" if s.decision_minutes is None else f"{s.decision_minutes:.1f}"),
        ("Last decision", "" if row is None or not row.decision else f"{row.decision}: {row.reason}"),
    ]
    lead = None if row is None else row.leading
    dl = "".join(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in items)
    dl += ('<dt>Canary weight</dt><dd><strong id="canary-weight">'
           f'{e("–" if weight is None else f"{weight}%")}</strong>'
           + ("" if weight is None
              else f' <meter min="0" max="100" value="{weight}" aria-label="canary weight"></meter>')
           + "</dd>")
    dl += f"<dt>Leading evidence</dt><dd>{_evidence(lead)}</dd>"
    return command_result(command) + f'<dl class="facts" data-phase="{e(s.phase)}">{dl}</dl>'


def log_section(detail: RolloutDetail) -> str:
    if not detail.timeline:
        return '<p class="muted">No tick yet.</p>'
    first = detail.timeline[0].at
    rows = [(str(t.tick), f"{(t.at - first).total_seconds() / 60:.1f}", t.phase,
             " / ".join(f"{k} {v}" for k, v in t.weights.items()), t.decision, t.reason)
            for t in reversed(detail.timeline)]
    return table(("Tick", "Minute", "Phase", "Weights", "Decision", "Reason"), rows, cls="log")


def events_section(detail: RolloutDetail) -> str:
    if not detail.events:
        return '<p class="muted">No events.</p>'
    return table(("Tick", "At", "Kind", "Message"),
                 [(str(x.tick), when(x.at), x.kind, x.message) for x in reversed(detail.events)])


def findings_section(findings: Sequence[MetricVerdict], trace_events: Sequence[str]) -> str:
    if not findings and not trace_events:
        return '<p class="muted">No trace findings (no trace source, or none computed on this replica).</p>'
    rows = [(v.metric, v.verdict.value, _num(v.ratio), v.reason) for v in findings]
    out = table(("Finding", "Verdict", "Effect", "Reason"), rows) if rows else ""
    if trace_events:
        out += "<ul>" + "".join(f"<li>{e(m)}</li>" for m in trace_events) + "</ul>"
    return out


def rollout_page(rollout_id: str, sections: dict[str, str], spec_text: str, spec: dict[str, Any], *,
                 session: Session, csrf: str, live: str) -> str:
    text = spec_text or yaml.safe_dump(spec, sort_keys=False)
    body = (
        f"<h1>Rollout {e(rollout_id)}</h1>"
        f'<p><a id="report" href="/rollouts/{quote(rollout_id)}/report" download>Download the report</a> '
        "(one HTML file that opens offline)</p>"
        f'<div id="live-head">{sections["head"]}</div>'
        f'<div id="live-commands">{sections["commands"]}</div>'
        f'<h2>Charts</h2><div id="live-charts">{sections["charts"]}</div>'
        f'<h2>Decision log</h2><div id="live-log" class="scroll">{sections["log"]}</div>'
        f'<h2>Events</h2><div id="live-events" class="scroll">{sections["events"]}</div>'
        f'<h2>Trace findings</h2><div id="live-findings">{sections["findings"]}</div>'
        f"<h2>Spec</h2><pre>{e(text)}</pre>"
    )
    return page(f"Rollout {rollout_id}", body, session=session, csrf=csrf, live=live)


def confirm_page(rollout_id: str, command: Command, *, session: Session, csrf: str) -> str:
    body = (
        f'<h1 class="confirm">{e(command.value.capitalize())} rollout {e(rollout_id)}?</h1>'
        f"<p>{e(command.value.capitalize())} will {e(COMMAND_WORDS[command])}. The leader applies it at once, "
        "in a tick of its own.</p>"
        f'<form method="post" action="/rollouts/{e(rollout_id)}/command">'
        f'<input type="hidden" name="csrf" value="{e(csrf)}">'
        f'<input type="hidden" name="command" value="{e(command.value)}">'
        f'<button type="submit" id="confirm">Yes, {e(command.value)}</button> '
        f'<a href="/rollouts/{e(rollout_id)}">Cancel</a></form>'
    )
    return page(f"{command.value.capitalize()} {rollout_id}", body, session=session, csrf=csrf)


def message_page(title: str, message: str, *, session: Session | None, csrf: str = "") -> str:
    body = f"<h1>{e(title)}</h1><p>{e(message)}</p><p><a href=\"/\">All rollouts</a></p>"
    return page(title, body, session=session, csrf=csrf)


# ---- plan ----


def plan_page(*, session: Session, csrf: str, spec_text: str = "", rps: str = "50", error_rate: str = "0.005",
              p99: str = "250", budget: str = "", lines: Sequence[str] = (), error: str = "") -> str:
    def field(name: str, label: str, value: str, hint: str) -> str:
        return (f'<p><label for="p-{name}">{e(label)}</label> '
                f'<input id="p-{name}" name="{name}" value="{e(value)}" inputmode="decimal"> '
                f'<span class="muted small">{e(hint)}</span></p>')

    out = ""
    if error:
        out = f'<p class="error" role="alert" id="plan-error">{e(error)}</p>'
    elif lines:
        out = '<h2>What the plan says</h2><pre id="plan-output">' + e("\n".join(lines)) + "</pre>"
    body = (
        "<h1>Plan a rollout</h1>"
        "<p>Paste a rollout spec and the service's traffic: the same answer as <code>canary-analyzer plan</code>, "
        "including the synthetic load to add when the traffic is too little to decide within the budget.</p>"
        '<form method="post" action="/plan">'
        f'<input type="hidden" name="csrf" value="{e(csrf)}">'
        '<p><label for="p-spec">Rollout spec (YAML)</label><br>'
        f'<textarea id="p-spec" name="spec" rows="16" cols="90" required>{e(spec_text)}</textarea></p>'
        + field("rps", "Traffic level (requests per second)", rps, "all subsets together")
        + field("error_rate", "Baseline error rate", error_rate, "e.g. 0.005")
        + field("p99", "Baseline p99 latency (ms)", p99, "")
        + field("budget", "Time budget", budget, "e.g. 30m; empty: the spec's timing.budget")
        + '<p><button type="submit">Plan</button></p></form>' + out
    )
    return page("Plan", body, session=session, csrf=csrf)
