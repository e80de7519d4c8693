"""One-shot trace diagnostics for a canary: which operation got slower or failed more, which calls are new.

Pure: spans in, frozen report out. Traces explain; they do not gate (statistics.md §5.3), so the verdicts
carry gate=False.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np

from analyzer.model import MetricVerdict, Span, Verdict
from analyzer.traces.stats import (
    RateRatio,
    Shift,
    bh_reject,
    counts_greater,
    error_ratio,
    hodges_lehmann_log,
    presence_greater,
)
from analyzer.traces.structure import TraceView, build_traces, critical_path, downstream_calls

MIN_TRACES = 5  # per arm, below which an operation is not tested
FINDING_PREFIX = "traces/"  # metric name prefix of a finding's verdict row (how the store keeps findings)
SUMMARY_METRIC = "traces/summary"  # the report's summary row; apart from a `type: traces` metric named "traces"


class FindingKind(StrEnum):
    """What a trace finding says about the canary; the names `judge --json` and the store use."""

    SLOWER = "slower"  # an operation's server spans take longer
    ERRORS = "errors"  # an operation's spans fail more often
    NEW_CALL = "new_call"  # a downstream call the baseline never makes
    N_PLUS_ONE = "n_plus_one"  # the same downstream call repeated more often per trace


@dataclass(frozen=True)
class OperationStats:
    """Server spans of one operation (labelled `caller -> app`), canary traces vs baseline traces."""

    label: str
    traces_canary: int
    traces_baseline: int
    spans_canary: int
    spans_baseline: int
    errors_canary: int
    errors_baseline: int
    shift: Shift | None  # None when either arm has fewer than MIN_TRACES traces
    errors: RateRatio
    critical_path_canary: float  # mean share of the anchor span's critical path
    critical_path_baseline: float


@dataclass(frozen=True)
class CallStats:
    """A downstream call below the canary/baseline span: how often and how many times per trace."""

    label: str
    traces_canary: int  # traces with at least one such call
    traces_baseline: int
    per_trace_canary: float  # mean calls per trace over all traces of the arm
    per_trace_baseline: float
    p_value: float


@dataclass(frozen=True)
class Finding:
    kind: FindingKind
    label: str  # the operation, `caller -> app`
    reason: str
    p_value: float
    effect: float  # duration factor, error-rate ratio, share of traces, or calls-per-trace ratio
    ci: tuple[float, float] | None = None

    def to_json(self) -> dict[str, Any]:
        ci = [_finite(self.ci[0]), _finite(self.ci[1])] if self.ci else None
        return {"kind": self.kind.value, "operation": self.label, "effect": _finite(self.effect), "ci": ci,
                "reason": self.reason, "p_value": _finite(self.p_value)}

    def verdict(self) -> MetricVerdict:
        """The finding as a diagnostic verdict row (gate=False), which the store keeps like any verdict."""
        return MetricVerdict(  # the store's metric column holds 200 characters; details keep the whole label
            metric=f"{FINDING_PREFIX}{self.kind.value}:{self.label}"[:200], verdict=Verdict.FAIL, reason=self.reason,
            gate=False, ratio=self.effect, ci=self.ci,
            details={"p_value": self.p_value, "kind": self.kind.value, "operation": self.label},
        )

    @classmethod
    def from_verdict(cls, v: MetricVerdict) -> Finding | None:
        """The finding a stored verdict row holds; None for any other row."""
        if not v.metric.startswith(FINDING_PREFIX) or v.metric == SUMMARY_METRIC:
            return None
        if str(v.details.get("kind")) not in {k.value for k in FindingKind}:
            return None
        kind = str(v.details["kind"])
        label = str(v.details.get("operation") or v.metric.split(":", 1)[-1])
        p = v.details.get("p_value")
        return cls(FindingKind(kind), label, v.reason, float(p) if isinstance(p, int | float) else math.nan,
                   math.nan if v.ratio is None else v.ratio, v.ci)


def _finite(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


def findings_in(verdicts: Sequence[MetricVerdict]) -> list[Finding]:
    """The trace findings among stored verdict rows (e.g. a rollout's final tick)."""
    return [f for f in (Finding.from_verdict(v) for v in verdicts) if f is not None]


def stored_traces(verdicts: Sequence[MetricVerdict]) -> dict[str, Any] | None:
    """The `traces` object rebuilt from stored verdict rows; None when the rows hold no trace report."""
    summary = next((v for v in verdicts if v.metric == SUMMARY_METRIC), None)
    findings = findings_in(verdicts)
    if summary is None and not findings:
        return None

    def count(side: Mapping[str, float] | None) -> int | None:
        return None if not side or "traces" not in side else int(side["traces"])

    return findings_json(findings, canary_traces=count(summary.canary if summary else None),
                         baseline_traces=count(summary.baseline if summary else None))


def findings_json(findings: Sequence[Finding], *, canary_traces: int | None = None,
                  baseline_traces: int | None = None) -> dict[str, Any]:
    """The `traces` object of `judge --json` and `history show --json`."""
    return {"canary_traces": canary_traces, "baseline_traces": baseline_traces,
            "findings": [f.to_json() for f in findings]}


def finding_lines(findings: Sequence[Finding]) -> list[str]:
    return [f"  [{f.kind.value}] {f.reason}" for f in findings]


@dataclass(frozen=True)
class TraceReport:
    baseline_subset: str
    canary_subset: str
    traces_baseline: int
    traces_canary: int
    alpha: float
    operations: tuple[OperationStats, ...]
    calls: tuple[CallStats, ...]
    findings: tuple[Finding, ...]

    @property
    def enough_data(self) -> bool:
        return min(self.traces_baseline, self.traces_canary) >= MIN_TRACES

    def summary(self) -> str:
        head = f"traces: {self.traces_canary} canary vs {self.traces_baseline} baseline"
        if not self.enough_data:
            return f"{head}; too few to compare"
        if not self.findings:
            return f"{head}; no operation looks worse in the canary"
        return "\n".join([head, *(f"  - {f.reason}" for f in self.findings)])

    def verdicts(self) -> list[MetricVerdict]:
        """Diagnostics only (gate=False): a summary row plus one row per finding, FAIL meaning 'looks worse'."""
        counts = {"traces": float(self.traces_canary)}, {"traces": float(self.traces_baseline)}
        status = Verdict.FAIL if self.findings else Verdict.CONTINUE
        if not self.enough_data:
            status = Verdict.NO_DATA
        rows = [MetricVerdict(
            metric=SUMMARY_METRIC, verdict=status, reason=self.summary().splitlines()[0], gate=False,
            canary=counts[0], baseline=counts[1], details={"findings": len(self.findings)},
        )]
        rows += [f.verdict() for f in self.findings]
        return rows

    def to_json(self) -> dict[str, Any]:
        return findings_json(self.findings, canary_traces=self.traces_canary, baseline_traces=self.traces_baseline)


def _pct(factor: float) -> str:
    return f"{(factor - 1) * 100:+.0f}%"


@dataclass
class _Arm:
    """Per-label accumulators for one arm."""

    traces: int = 0
    log_means: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    spans: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    errors: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    calls: dict[str, list[tuple[int, int]]] = field(default_factory=lambda: defaultdict(list))  # (trace, count)
    cp_share: dict[str, float] = field(default_factory=lambda: defaultdict(float))

    def add(self, view: TraceView) -> None:
        index, self.traces = self.traces, self.traces + 1
        logs: dict[str, list[float]] = defaultdict(list)
        for s in view.server_spans():
            label = view.labels[s.span_id]
            logs[label].append(math.log(max(s.duration_us, 1)))
            self.spans[label] += 1
            self.errors[label] += int(s.error)
        for label, values in logs.items():
            # One value per trace: spans of one trace are dependent (statistics.md §5.3).
            self.log_means[label].append(float(np.mean(values)))
        for label, count in downstream_calls(view).items():
            self.calls[label].append((index, count))
        if view.anchor.duration_us > 0:
            for label, owned in critical_path(view).items():
                self.cp_share[label] += owned / view.anchor.duration_us

    def per_trace(self, label: str) -> np.ndarray:
        counts = np.zeros(self.traces)
        for index, count in self.calls.get(label, []):
            counts[index] = count
        return counts

    def cp_mean(self, label: str) -> float:
        return self.cp_share.get(label, 0.0) / self.traces if self.traces else 0.0


def analyze_traces(
    spans: Iterable[Span],
    baseline_subset: str,
    canary_subset: str,
    *,
    alpha: float = 0.05,
    min_shift: float = 1.10,
    min_error_ratio: float = 1.5,
    min_calls_ratio: float = 1.25,
) -> TraceReport:
    """Compare canary traces with baseline traces per operation and per downstream call.

    A finding needs both a Benjamini–Hochberg rejection at `alpha` across every test in the report and an
    effect above the `min_*` floor, so that tiny but significant differences stay out of the list.
    """
    arms = {baseline_subset: _Arm(), canary_subset: _Arm()}
    for view in build_traces(spans, (baseline_subset, canary_subset)):
        arms[view.arm].add(view)
    b, c = arms[baseline_subset], arms[canary_subset]

    operations = []
    for label in sorted(set(b.spans) | set(c.spans)):
        xs, ys = np.exp(c.log_means.get(label, [])), np.exp(b.log_means.get(label, []))
        shift = hodges_lehmann_log(xs, ys, alpha=alpha) if min(xs.size, ys.size) >= MIN_TRACES else None
        n_c, n_b = c.spans.get(label, 0), b.spans.get(label, 0)
        e_c, e_b = c.errors.get(label, 0), b.errors.get(label, 0)
        ratio = error_ratio(e_c, n_c, e_b, n_b, alpha=alpha) if n_c and n_b else RateRatio(1.0, (0.0, math.inf), 1.0)
        operations.append(OperationStats(
            label, xs.size, ys.size, n_c, n_b, e_c, e_b, shift, ratio, c.cp_mean(label), b.cp_mean(label)))

    calls = []
    enough = min(b.traces, c.traces) >= MIN_TRACES
    for label in sorted(set(b.calls) | set(c.calls)) if enough else []:
        k_c, k_b = len(c.calls.get(label, [])), len(b.calls.get(label, []))
        per_c, per_b = c.per_trace(label), b.per_trace(label)
        p = presence_greater(k_c, c.traces, k_b, b.traces) if k_b == 0 else counts_greater(per_c, per_b)
        calls.append(CallStats(label, k_c, k_b, float(per_c.mean()), float(per_b.mean()), p))

    findings = _findings(operations, calls, c.traces, b.traces, alpha, min_shift, min_error_ratio, min_calls_ratio)
    return TraceReport(baseline_subset, canary_subset, b.traces, c.traces, alpha,
                       tuple(operations), tuple(calls), tuple(findings))


def _findings(
    operations: list[OperationStats],
    calls: list[CallStats],
    traces_c: int,
    traces_b: int,
    alpha: float,
    min_shift: float,
    min_error_ratio: float,
    min_calls_ratio: float,
) -> list[Finding]:
    level = f"{100 * (1 - alpha):.0f}% CI"
    candidates: list[tuple[float, Finding | None]] = []  # (p, finding if the effect is material)
    for op in operations:
        if op.shift is not None:
            s = op.shift
            cp = (f"; critical-path share {op.critical_path_canary:.0%} vs {op.critical_path_baseline:.0%}"
                  if op.critical_path_canary or op.critical_path_baseline else "")
            reason = (f"{op.label}: canary {_pct(s.factor)} ({level} {_pct(s.ci[0])}..{_pct(s.ci[1])}, "
                      f"{op.traces_canary} vs {op.traces_baseline} traces){cp}")
            material = s.factor >= min_shift and s.ci[0] > 1.0
            candidates.append((s.p_value, Finding(FindingKind.SLOWER, op.label, reason, s.p_value, s.factor, s.ci)
                               if material else None))
        if op.errors_canary + op.errors_baseline > 0 and op.spans_canary and op.spans_baseline:
            r = op.errors
            reason = (f"{op.label}: errors {op.errors_canary / op.spans_canary:.1%} vs "
                      f"{op.errors_baseline / op.spans_baseline:.1%} of spans ({op.errors_canary}/{op.spans_canary} "
                      f"vs {op.errors_baseline}/{op.spans_baseline}), ratio {r.ratio:.1f}x")
            material = r.ratio >= min_error_ratio and op.errors_canary >= 3
            candidates.append((r.p_value, Finding(FindingKind.ERRORS, op.label, reason, r.p_value, r.ratio, r.ci)
                               if material else None))
    for call in calls:
        callee = call.label.rsplit(" -> ", 1)[-1]
        if call.traces_baseline == 0:
            reason = f"new downstream call in canary: {callee} ({call.traces_canary} of {traces_c} traces)"
            candidates.append((call.p_value, Finding(
                FindingKind.NEW_CALL, call.label, reason, call.p_value, call.traces_canary / max(traces_c, 1))))
            continue
        ratio = call.per_trace_canary / call.per_trace_baseline if call.per_trace_baseline else math.inf
        reason = (f"repeated calls in canary (N+1): {call.label}: {call.per_trace_canary:.1f} vs "
                  f"{call.per_trace_baseline:.1f} per trace ({traces_c} vs {traces_b} traces)")
        candidates.append((call.p_value, Finding(FindingKind.N_PLUS_ONE, call.label, reason, call.p_value, ratio)
                           if ratio >= min_calls_ratio else None))
    rejected = bh_reject([p for p, _ in candidates], alpha)
    found = [f for (_, f), r in zip(candidates, rejected, strict=True) if r and f is not None]
    return sorted(found, key=lambda f: f.p_value)
