"""`canary-analyzer judge`: replay a past window from Prometheus through the daemon's gate, for CI pipelines.

Exit status: 0 pass, 1 fail, 3 inconclusive, 2 error (bad option, Prometheus unreachable, nothing readable).
The judging itself is `analyzer.replay.replay`, the same gate the daemon applies interval by interval.
With a Jaeger trace source (`sources.traces` or `--jaeger-url`) the spans of each interval are fetched too;
a Jaeger that cannot be asked is reported as `traces: {"unavailable": ...}`, never an error.
"""

from __future__ import annotations

import json
import math
import re
import socket
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import structlog
from requests.utils import get_environ_proxies

from analyzer.app import wiring
from analyzer.config import PrometheusSource, RolloutSpec, SpecError, parse_duration
from analyzer.ports import SourceUnavailable
from analyzer.replay import GapKind, MetricSummary, ReplayReport, TraceOutcome, replay
from analyzer.sources.prometheus.client import PromClient
from analyzer.traces import finding_lines

EXIT_PASS, EXIT_FAIL, EXIT_ERROR, EXIT_INCONCLUSIVE = 0, 1, 2, 3
EXIT_CODES = {"pass": EXIT_PASS, "fail": EXIT_FAIL, "inconclusive": EXIT_INCONCLUSIVE}

# re.ASCII: \d would also take other scripts' digits (e.g. Arabic-Indic), which float() reads silently.
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$", re.ASCII)
_UNIX = re.compile(r"^\d+(\.\d+)?$", re.ASCII)
DEFAULT_MAX_WINDOW = "1d"  # replaying more takes a query per interval: --start 0 would run for hours
_URL = re.compile(r"^https?://[^\s/]+")


def parse_time(value: str, option: str) -> datetime:
    """RFC 3339 with an offset (2026-01-01T00:00:00Z) or unix seconds -> an aware UTC datetime."""
    text = value.strip()
    if not text.isascii():
        raise SpecError(f"{option}: {value!r} has characters other than ASCII (write digits as 0-9)")
    try:
        if _UNIX.match(text):
            return datetime.fromtimestamp(float(text), UTC)
        if _RFC3339.match(text):
            normalized = text.upper().replace("Z", "+00:00")
            return datetime.fromisoformat(normalized).astimezone(UTC)
    except (ValueError, OverflowError, OSError):
        raise SpecError(f"{option}: {value!r} is not a valid time") from None
    raise SpecError(f"{option}: {value!r} is not RFC 3339 (e.g. 2026-01-01T12:00:00Z) or unix seconds")


def prometheus_spec(spec: RolloutSpec, url: str | None) -> RolloutSpec:
    """The spec with its metrics source a Prometheus one, at `url` when given."""
    if url is None:
        if not isinstance(spec.sources.metrics, PrometheusSource):
            raise SpecError(f"sources.metrics.type: {spec.sources.metrics.type!r} cannot be replayed; judge reads "
                            "Prometheus (set type: prometheus, or pass --prometheus-url)")
        return spec
    if not _URL.match(url):
        raise SpecError(f"--prometheus-url: {url!r} is not an http(s) URL")
    return wiring.with_overrides(spec, wiring.Settings(prometheus_url=url))


def jaeger_spec(spec: RolloutSpec, url: str | None) -> RolloutSpec:
    """The spec with its trace source a Jaeger one at `url` when given."""
    if url is None:
        return spec
    if not _URL.match(url):
        raise SpecError(f"--jaeger-url: {url!r} is not an http(s) URL")
    return wiring.with_overrides(spec, wiring.Settings(jaeger_url=url))


def parse_max_window(value: str) -> float:
    """--max-window: a duration (30m, 6h, 1d, 2d) -> seconds."""
    try:
        seconds = parse_duration(value if value.isascii() else "?")
    except ValueError as exc:
        raise SpecError(f"--max-window: {value!r}: {exc}") from None
    if seconds <= 0:
        raise SpecError(f"--max-window: {value!r} is not above 0")
    return seconds


def _window(spec: RolloutSpec, start: str, end: str, max_window_s: float) -> tuple[datetime, datetime]:
    t0, t1 = parse_time(start, "--start"), parse_time(end, "--end")
    if t1 <= t0:
        raise SpecError(f"--end: {end!r} is not after --start {start!r}")
    if (t1 - t0).total_seconds() > max_window_s:
        raise SpecError(f"--start: the window {t0.isoformat()} - {t1.isoformat()} is longer than --max-window "
                        f"{max_window_s / 3600:g}h; judge a shorter window or raise --max-window")
    interval = spec.timing.interval
    if (t1 - t0).total_seconds() < interval:
        raise SpecError(f"--end: the window {t0.isoformat()} – {t1.isoformat()} is shorter than one interval "
                        f"(timing.interval {interval:g}s)")
    return t0, t1


def _error(message: str) -> int:
    sys.stderr.write("error: " + " ".join(message.split()) + "\n")
    return EXIT_ERROR


def connect_error(
    config: PrometheusSource, *, backoff_s: float = 0.5, sleep: Callable[[float], None] = time.sleep
) -> str | None:
    """Why no TCP connection to the server could be opened (after `retries` more tries); None when one could.

    Tells "connection refused" or an unknown host in plain words, before any HTTP request (whose
    errors are long). Skipped behind an HTTP proxy, where only the proxy can connect.
    """
    url = urlsplit(config.url)
    if not url.hostname or get_environ_proxies(config.url):
        return None
    port = url.port or (443 if url.scheme == "https" else 80)
    why = ""
    for attempt in range(config.retries + 1):
        if attempt:
            sleep(backoff_s * 2 ** (attempt - 1))
        try:
            with socket.create_connection((url.hostname, port), timeout=config.timeout or None):
                return None
        except socket.gaierror as exc:
            why = f"unknown host {url.hostname!r} ({exc.strerror})"
        except OSError as exc:
            why = exc.strerror or type(exc).__name__
    return f"cannot connect to Prometheus at {config.url}: {why} ({config.retries + 1} attempts)"


def _nothing_read(report: ReplayReport) -> str | None:
    """The first failure when no interval of the window could be read at all; else None.

    Unreadable is a source that did not answer or values no counter has (NaN, ±Inf, fractions).
    """
    dq = report.data_quality
    unreadable = [g for g in dq.gaps if g.kind in (GapKind.UNAVAILABLE, GapKind.UNREADABLE)]
    if dq.intervals and len(unreadable) == dq.intervals:
        return unreadable[0].why
    return None


def judge_command(
    spec: RolloutSpec, start: str, end: str, *, prometheus_url: str | None, as_json: bool,
    canary_weight: int | None = None, jaeger_url: str | None = None, max_window: str = DEFAULT_MAX_WINDOW,
) -> int:
    """Replay [start, end) and print the verdict; returns the exit status. Option mistakes raise SpecError.

    `canary_weight` is the canary's percentage of traffic during the window; with it the sample-ratio
    check runs (the weights of a past window are not in the metrics).
    """
    spec = jaeger_spec(prometheus_spec(spec, prometheus_url), jaeger_url)
    t0, t1 = _window(spec, start, end, parse_max_window(max_window))
    if canary_weight is not None and not 0 < canary_weight < 100:
        raise SpecError(f"--canary-weight: {canary_weight} is not between 0 and 100 (exclusive)")
    share = None if canary_weight is None else canary_weight / 100.0
    config = spec.sources.metrics
    assert isinstance(config, PrometheusSource)
    log = structlog.get_logger(__name__).bind(target=spec.name, prometheus=config.url)
    if t1.timestamp() > time.time() - config.scrape_interval:
        log.warning("window_end_not_scraped_yet", end=t1.isoformat(), note="the last intervals may have no data")
    # An unreachable server is an error, not a window full of gaps: connect, then one cheap query.
    refused = connect_error(config)
    if refused is not None:
        return _error(f"judge: {refused}")
    try:
        PromClient(config).instant("vector(1)", time.time())
    except SourceUnavailable as exc:
        return _error(f"judge: cannot read Prometheus: {exc}")
    traces = wiring.trace_source(spec)
    try:
        report = replay(spec, wiring.metric_source(spec), t0, t1, expected_share=share, traces=traces)
    finally:
        close = getattr(traces, "close", None)
        if close is not None:
            close()
    failure = _nothing_read(report)
    if failure is not None:
        return _error(f"judge: no interval of the window could be read from Prometheus ({failure})")
    log.info("judged", verdict=report.verdict, decided_at=report.decided_at.isoformat() if report.decided_at else None)
    if as_json:
        sys.stdout.write(json.dumps(report_json(report, spec, srm_checked=share is not None), indent=2) + "\n")
    else:
        sys.stdout.write("\n".join(summary_lines(report, spec, srm_checked=share is not None)) + "\n")
    return EXIT_CODES[report.verdict]


# ---- output ----


def _finite(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


def _metric_json(m: MetricSummary) -> dict[str, Any]:
    return {
        "name": m.metric,
        "verdict": m.verdict,
        "gate": m.gate,
        "canary": dict(m.canary),
        "baseline": dict(m.baseline),
        "ratio": _finite(m.ratio),
        "ci": [_finite(m.ci[0]), _finite(m.ci[1])] if m.ci else None,
        "e_value": _finite(m.e_value),
        "threshold": _finite(m.threshold),
        "reason": m.reason,
    }


def report_json(report: ReplayReport, spec: RolloutSpec, *, srm_checked: bool) -> dict[str, Any]:
    """The --json object: verdict, decided_at, per-metric evidence and data quality."""
    base = report.to_json()
    return {
        "rollout": spec.name,
        "verdict": report.verdict,
        "reason": report.reason,
        "start": base["start"],
        "end": base["end"],
        "interval_s": spec.timing.interval,
        "decided_at": base["decided_at"],
        "metrics": [_metric_json(m) for m in report.metrics],
        "data_quality": {**base["data_quality"], "srm_checked": srm_checked},
        **({"traces": base["traces"]} if "traces" in base else {}),
    }


def _elapsed(report: ReplayReport, spec: RolloutSpec) -> str:
    if report.decided_at is None:
        return f"no decision in {report.data_quality.intervals} intervals"
    n = round((report.decided_at - report.start) / timedelta(seconds=spec.timing.interval))
    return f"decided at {report.decided_at.isoformat()}, after {n} interval{'s' if n != 1 else ''}"


def summary_lines(report: ReplayReport, spec: RolloutSpec, *, srm_checked: bool) -> list[str]:
    """A short human summary: the verdict, one line per gate metric, then data quality."""
    dq = report.data_quality
    lines = [
        f"{spec.name}: {report.verdict.upper()} (exit {EXIT_CODES[report.verdict]})",
        f"window {report.start.isoformat()} – {report.end.isoformat()}: {_elapsed(report, spec)}",
    ]
    lines += [f"  [{m.verdict}] {m.reason}" for m in report.metrics if m.gate]  # a reason starts with its metric
    gaps = ", ".join(f"{g.start.isoformat()} ({g.why})" for g in dq.gaps[:3]) or "none"
    if len(dq.gaps) > 3:
        gaps += f" and {len(dq.gaps) - 3} more"
    split = dq.srm or ("no mismatch" if srm_checked else "not checked (give the canary's weight)")
    lines += [
        f"data: {dq.intervals_with_data}/{dq.intervals} intervals with data; gaps: {gaps}",
        f"stale series: {len(dq.stale_series) or 'none'}; traffic split: {split}"
        f"{'; ' + dq.shared_outage if dq.shared_outage else ''}",
    ]
    if report.traces is not None:
        lines += trace_lines(report.traces)
    return lines


def trace_lines(outcome: TraceOutcome) -> list[str]:
    """The trace findings (diagnostics unless a `type: traces` metric gates), or why there are none."""
    if outcome.report is None:
        return [f"traces: unavailable ({outcome.unavailable}); judged on the metrics alone"]
    r = outcome.report
    head = f"traces: {r.traces_canary} canary vs {r.traces_baseline} baseline"
    if not r.enough_data:
        return [f"{head}; too few to compare"]
    if not r.findings:
        return [f"{head}; no operation looks worse in the canary"]
    return [f"{head}; {len(r.findings)} finding{'s' if len(r.findings) != 1 else ''}:",
            *finding_lines(r.findings)]
