"""Pure trace analysis: spans in, diagnostics out (no I/O)."""

from analyzer.traces.exceedance import log_edges, trace_exceedance_counts
from analyzer.traces.findings import (
    FINDING_PREFIX,
    SUMMARY_METRIC,
    CallStats,
    Finding,
    FindingKind,
    OperationStats,
    TraceReport,
    analyze_traces,
    finding_lines,
    findings_in,
    findings_json,
    stored_traces,
)
from analyzer.traces.frame import spans_frame

__all__ = [
    "FINDING_PREFIX",
    "SUMMARY_METRIC",
    "CallStats",
    "Finding",
    "FindingKind",
    "OperationStats",
    "TraceReport",
    "analyze_traces",
    "finding_lines",
    "findings_in",
    "findings_json",
    "log_edges",
    "spans_frame",
    "stored_traces",
    "trace_exceedance_counts",
]
