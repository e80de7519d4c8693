"""Spans as a pandas DataFrame, one row per span, for notebooks and the analysis."""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from analyzer.model import Span

COLUMNS = (
    "trace", "span", "parent", "service", "operation", "kind", "start", "duration_us",
    "error", "http_status", "subset", "attributes",
)


def spans_frame(spans: Iterable[Span]) -> pd.DataFrame:
    """Columns: trace, span, parent, service, operation, kind, start (UTC), duration_us, error,
    http_status (nullable Int64), subset, attributes (dict)."""
    rows = [
        (s.trace_id, s.span_id, s.parent_id, s.service, s.operation, s.kind, s.start_us, s.duration_us,
         s.error, s.http_status, s.subset, dict(s.attributes))
        for s in spans
    ]
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    frame["start"] = pd.to_datetime(frame["start"].astype("int64"), unit="us", utc=True)
    frame["duration_us"] = frame["duration_us"].astype("int64")
    frame["error"] = frame["error"].astype(bool)
    frame["http_status"] = frame["http_status"].astype("Int64")
    return frame
