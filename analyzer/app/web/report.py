"""One rollout as a self-contained HTML page: the verdict in plain words, charts as inline SVG, the weight
timeline, the config and the event log. The page loads nothing (its Content-Security-Policy forbids it),
so it can be mailed, attached to a ticket or opened offline. `canary-analyzer report` writes it; the
daemon's API can serve `render_report` as it is.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from html import escape
from typing import TYPE_CHECKING, Any

import yaml

from analyzer.app.web.charts import BASELINE, CANARY, CHART_CSS, PALETTE, Rule, Series, line_chart
from analyzer.model import MetricVerdict
from analyzer.store.history import RolloutDetail, Source, rollout_detail, rollout_spec, ticks_frame, verdicts_frame
from analyzer.traces import FINDING_PREFIX

if TYPE_CHECKING:
    import pandas as pd

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"

PAGE_CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 24px auto; max-width: 1000px; color: #111; padding: 0 16px; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 17px; margin-top: 28px; border-bottom: 1px solid #ddd; }
.sub { color: #555; } .verdict { font-size: 16px; padding: 10px 14px; border-radius: 6px; background: #f3f3f3; }
.promoted { background: #e5f5e5; } .rolled_back, .failed, .aborted { background: #fbe4e4; }
.paused, .inconclusive { background: #fff4d6; }
table { border-collapse: collapse; width: 100%; font-size: 12.5px; } td, th { border-bottom: 1px solid #eee;
padding: 3px 6px; text-align: left; vertical-align: top; } th { background: #fafafa; }
pre { background: #f7f7f7; padding: 10px; overflow-x: auto; font-size: 12px; }
.charts { display: flex; flex-wrap: wrap; gap: 8px; } .muted { color: #777; }
"""

LEAD = {
    "promoted": "Promoted",
    "rolled_back": "Rolled back",
    "aborted": "Aborted",
    "paused": "Paused",
    "inconclusive": "Inconclusive",
    "failed": "Failed",
}


def explain(detail: RolloutDetail, spec: dict[str, Any]) -> list[str]:
    """The verdict in plain words: what happened, when, at which weight, and which metric decided it."""
    s = detail.summary
    canary = spec.get("target", {}).get("canary", {}).get("subset")
    minute = "" if s.decision_minutes is None else f" after {s.decision_minutes:g} minutes"
    steps = sorted({w for t in detail.timeline if t.phase == "Progressing"
                    for k, w in t.weights.items() if k == canary})
    weight = f"; canary weight steps reached: {', '.join(f'{w}%' for w in steps)}" if steps else (
        "; the canary only saw header-routed test traffic" if detail.timeline else "")
    if s.outcome is None:
        lines = [f"Still running: phase {s.phase}, {s.ticks} ticks so far{weight}."]
    else:
        lines = [f"{LEAD.get(s.outcome, s.outcome)}{minute}{weight}."]
    last = detail.timeline[-1] if detail.timeline else None
    decisive = next((t for t in reversed(detail.timeline) if t.decision in
                     ("promote", "rollback", "abort", "pause", "inconclusive", "fail")), last)
    if decisive is not None:
        lines.append(f"Why: {decisive.reason}")
    gates = [v for v in detail.final_verdicts if v.gate]
    alpha = spec.get("analysis", {}).get("alpha")
    for v in gates:
        lines.append(_metric_words(v, alpha))
    return lines


def _metric_words(v: MetricVerdict, alpha: float | None) -> str:
    what = {"fail": "proved a regression", "pass": "showed the canary no worse than the baseline",
            "continue": "had proved nothing either way yet", "no_data": "had no data",
            "halt": "made the comparison invalid"}.get(v.verdict.value, v.verdict.value)
    text = f"{v.metric} {what}"
    if v.ratio is not None and math.isfinite(v.ratio):
        text += f": canary/baseline ratio {v.ratio:.2f}"
        if v.ci:
            text += f" (could be {v.ci[0]:.2f} to {v.ci[1]:.2f})"
    if v.e_value is not None and v.threshold is not None:
        text += f"; evidence {v.e_value:.3g} against a threshold of {v.threshold:.3g}"
        if alpha:
            text += f" (a false rollback chance of at most {alpha:g})"
    return text + "."


def _minutes(frame: pd.DataFrame, by: pd.DataFrame) -> pd.DataFrame:
    return frame.merge(by[["tick_id", "minute"]], on="tick_id", how="left")


def _values(col: pd.Series) -> list[float | None]:
    # pandas is imported where a frame is at hand, never with this module: the service imports it (~100 MB).
    import pandas as pd

    return [None if pd.isna(v) else float(v) for v in col]


def weight_chart(ticks: pd.DataFrame) -> str:
    xs = list(ticks["minute"])
    series = [Series("canary weight %", list(zip(xs, _values(ticks["canary_weight"]), strict=True)), CANARY,
                     step=True),
              Series("baseline weight %", list(zip(xs, _values(ticks["baseline_weight"]), strict=True)), BASELINE,
                     step=True, dashed=True)]
    return line_chart(series, title="Weight timeline", y_label="% of traffic", y_min=0.0)


def error_rate_chart(ticks: pd.DataFrame) -> str:
    import pandas as pd

    def rate(errors: pd.Series, requests: pd.Series) -> list[float | None]:
        return [None if pd.isna(r) or not r else 100.0 * float(e) / float(r)
                for e, r in zip(errors, requests, strict=True)]

    xs = list(ticks["minute"])
    return line_chart([
        Series("canary", list(zip(xs, rate(ticks["canary_errors"], ticks["canary_requests"]), strict=True)), CANARY),
        Series("baseline", list(zip(xs, rate(ticks["baseline_errors"], ticks["baseline_requests"]), strict=True)),
               BASELINE),
    ], title="Error rate per tick", y_label="% of requests", y_min=0.0)


def metric_charts(metric: str, rows: pd.DataFrame, tolerance: float | None) -> list[str]:
    xs = list(rows["minute"])
    charts = []
    if rows["e_value"].notna().any():
        threshold = rows["threshold"].dropna()
        rules = [Rule(float(threshold.iloc[-1]), f"rollback threshold {threshold.iloc[-1]:.3g}")] if len(
            threshold) else []
        evidence = [Series("rollback evidence", list(zip(xs, _values(rows["e_value"]), strict=True)), CANARY)]
        if rows["promotion_e_value"].notna().any():
            evidence.append(Series("promotion evidence", list(zip(xs, _values(rows["promotion_e_value"]),
                                                                   strict=True)), PALETTE[2]))
        charts.append(line_chart(evidence, title=f"{metric}: evidence against its threshold", y_label="e-value",
                                 log_y=True, rules=rules))
    if rows["ratio"].notna().any():
        band = list(zip(xs, _values(rows["ci_lo"]), _values(rows["ci_hi"]), strict=True))
        rules = [Rule(1.0, "no difference")]
        if tolerance:
            rules.append(Rule(tolerance, f"tolerance {tolerance:g}", PALETTE[4]))
        charts.append(line_chart(
            [Series("canary / baseline", list(zip(xs, _values(rows["ratio"]), strict=True)), PALETTE[3], band=band)],
            title=f"{metric}: canary vs baseline (ratio, confidence sequence)", y_label="ratio", rules=rules))
    return charts


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _traces(detail: RolloutDetail) -> str:
    """The engine's trace report (diagnostics: they explain, they do not gate)."""
    traces = detail.traces
    if not traces:
        return '<p class="muted">No trace report was recorded for this rollout.</p>'
    rows = [(f.get("kind", ""), f.get("operation", ""), "" if f.get("effect") is None else f"{f['effect']:.3g}",
             f.get("reason", "")) for f in traces.get("findings", [])]
    counts = (f"{traces.get('canary_traces', 0)} canary and {traces.get('baseline_traces', 0)} baseline traces "
              "sampled.")
    if not rows:
        return f"<p>{escape(counts)} No finding: the canary's calls look like the baseline's.</p>"
    return f"<p>{escape(counts)}</p>" + _table(("kind", "operation", "effect", "why"), rows)


def _time(t: datetime | None) -> str:
    return "" if t is None else f"{t:%Y-%m-%d %H:%M:%S} UTC"


def render_report(source: Source, rollout_id: str) -> str:
    """The whole page as one string. Raises RolloutNotFound for an unknown id."""
    detail = rollout_detail(source, rollout_id)
    spec = rollout_spec(source, rollout_id)
    ticks = ticks_frame(source, rollout_id)
    verdicts = _minutes(verdicts_frame(source, rollout_id), ticks)
    s = detail.summary
    words = explain(detail, spec)
    tolerances = {m.get("name"): m.get("tolerance") for m in spec.get("analysis", {}).get("metrics", [])}
    charts = [weight_chart(ticks), error_rate_chart(ticks)]
    judged = verdicts[~verdicts["metric"].str.startswith(FINDING_PREFIX)]  # trace findings get their own table
    for metric, rows in judged.groupby("metric", sort=False):
        charts += metric_charts(str(metric), rows, tolerances.get(metric))
    config = detail.spec_text or yaml.safe_dump(spec, sort_keys=False)
    decisions = [(t.tick, f"{(t.at - ticks['at'].iloc[0]).total_seconds() / 60:g}", t.phase,
                  "/".join(f"{k} {v}" for k, v in t.weights.items()), t.decision, t.reason) for t in detail.timeline]
    events = [(e.tick, _time(e.at), e.kind, e.message) for e in detail.events]
    outcome = s.outcome or "running"
    parts = [
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">",
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        f"<title>Rollout {escape(s.id)}: {escape(outcome)}</title><style>{PAGE_CSS}{CHART_CSS}</style></head><body>",
        f"<h1>Rollout {escape(s.id)}</h1>",
        f'<p class="sub">{escape(s.name)} in {escape(s.namespace)} · started {escape(_time(s.started_at))} · '
        f"{s.ticks} ticks · recorded {escape(_time(s.created_at))}</p>",
        f'<div class="verdict {escape(outcome)}"><strong>{escape(words[0])}</strong></div>',
        "<ul>" + "".join(f"<li>{escape(w)}</li>" for w in words[1:]) + "</ul>",
        "<h2>Charts</h2>",
        '<div class="charts">' + "".join(charts) + "</div>",
        "<h2>Trace findings</h2>",
        _traces(detail),
        "<h2>Decision log</h2>",
        _table(("tick", "minute", "phase", "weights", "decision", "reason"), decisions),
        "<h2>Events</h2>",
        _table(("tick", "at", "kind", "message"), events) if events else '<p class="muted">No events.</p>',
        "<h2>Config</h2>",
        f"<pre>{escape(config)}</pre>",
        f'<p class="muted">Written by canary-analyzer from the history store; rollout meta: '
        f"{escape(str(dict(s.meta)))}.</p>",
        "</body></html>",
    ]
    return "\n".join(parts)
