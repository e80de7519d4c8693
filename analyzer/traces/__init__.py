"""Pure trace analysis: spans in, diagnostics out (no I/O)."""

from typing import TYPE_CHECKING

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

if TYPE_CHECKING:
    from analyzer.traces.frame import spans_frame


def __getattr__(name: str) -> object:
    # spans_frame needs pandas (and pandas pyarrow, ~100 MB); the daemon's ticks never build a frame.
    if name == "spans_frame":
        from analyzer.traces.frame import spans_frame

        return spans_frame
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
