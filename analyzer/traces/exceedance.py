"""Optional gate input: per-interval exceedance counts of span durations at fixed edges (statistics.md §5.3).

The engine's exceedance e-process takes (n_c, slow_c, n_b, slow_b) per interval and edge; spans give them
when the edges are fixed in advance (e.g. 32 log-spaced edges), never chosen from the data.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from analyzer.model import Span
from analyzer.traces.structure import build_traces


def log_edges(low_ms: float, high_ms: float, count: int = 32) -> tuple[float, ...]:
    """Fixed log-spaced edges in ms, rounded to 3 significant digits so they read well in reports."""
    return tuple(float(f"{e:.3g}") for e in np.geomspace(low_ms, high_ms, count))


def trace_exceedance_counts(
    spans: Iterable[Span],
    edges_ms: Sequence[float],
    baseline_subset: str,
    canary_subset: str,
) -> dict[float, tuple[int, int, int, int]]:
    """For one interval's spans: edge -> (n_c, slow_c, n_b, slow_b), one anchor server span per trace.

    `slow` counts durations strictly above the edge, like the `le` buckets of the Istio histogram.
    """
    durations: dict[str, list[float]] = {baseline_subset: [], canary_subset: []}
    for view in build_traces(spans, (baseline_subset, canary_subset)):
        if view.anchor.kind == "server":
            durations[view.arm].append(view.anchor.duration_us / 1000.0)
    c, b = np.asarray(durations[canary_subset]), np.asarray(durations[baseline_subset])
    return {
        float(edge): (int(c.size), int((c > edge).sum()), int(b.size), int((b > edge).sum()))
        for edge in edges_ms
    }
