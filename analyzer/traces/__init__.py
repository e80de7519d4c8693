"""Pure trace analysis: spans in, diagnostics out (no I/O)."""

from analyzer.traces.exceedance import log_edges, trace_exceedance_counts
from analyzer.traces.findings import CallStats, Finding, OperationStats, TraceReport, analyze_traces
from analyzer.traces.frame import spans_frame

__all__ = [
    "CallStats",
    "Finding",
    "OperationStats",
    "TraceReport",
    "analyze_traces",
    "log_edges",
    "spans_frame",
    "trace_exceedance_counts",
]
