"""Exact integer increments from raw cumulative counter samples (statistics.md §9, "Counter resets").

Pure functions, no I/O. A series is a time-sorted sequence of `(unix_seconds, value)` samples.

Rules:
* Difference each series on its own, then sum across series: summing raw counters first turns a
  pod restart into a negative or garbage delta.
* Reset rule: Δ = v_k − v_{k−1} if v_k ≥ v_{k−1}, else v_k (the counter restarted from 0). A reset
  followed by growth past the old value before the next scrape cannot be seen; Prometheus'
  `increase()` has the same blind spot.
* Window [start, end): a sample belongs to the window when start ≤ t < end, so consecutive windows
  split every series' increments exactly, with nothing counted twice or lost.
* The reference value is the last sample before `start`. When the series has no sample before `start`
  in the data given (the caller fetches a lookback long enough to bridge scrape gaps), the series is
  taken to have appeared inside the window and its first sample counts from 0. That is what happens
  for a new pod, and for a lazily created series such as the first `response_code="503"` of a pod.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

Sample = tuple[float, float]


def reset_delta(previous: float, current: float) -> float:
    """The increment between two consecutive samples of one counter, with the reset rule."""
    return current - previous if current >= previous else current


def series_deltas(values: Sequence[float], *, from_zero: bool) -> list[float]:
    """Per-sample increments of one series; the first counts from 0 only when `from_zero`."""
    out: list[float] = []
    previous = 0.0 if from_zero else None
    for v in values:
        out.append(0.0 if previous is None else reset_delta(previous, v))
        previous = v
    return out


def window_increase(samples: Sequence[Sample], start: float, end: float) -> float:
    """Increase of one series over [start, end), with the reset and appeared-inside rules above."""
    before = [v for t, v in samples if t < start]
    inside = [v for t, v in samples if start <= t < end]
    if not inside:
        return 0.0
    if before:
        return sum(series_deltas([before[-1], *inside], from_zero=False))
    return sum(series_deltas(inside, from_zero=True))


def as_count(value: float) -> int:
    """An exact integer from a counter increment; counters of requests are whole numbers."""
    if math.isnan(value) or math.isinf(value):
        raise ValueError(f"counter increment {value} is not a number")
    count = round(value)
    if abs(value - count) > 1e-6 * max(1.0, abs(value)):
        raise ValueError(f"counter increment {value} is not a whole number")
    return count


def sum_increases(series: Iterable[Sequence[Sample]], start: float, end: float) -> int:
    """Sum over series of each series' own increase: difference first, then add."""
    return sum(as_count(window_increase(s, start, end)) for s in series)


def has_nan(samples: Sequence[Sample]) -> bool:
    return any(math.isnan(v) for _, v in samples)


def is_stale(samples: Sequence[Sample], end: float, scrape_interval: float) -> bool:
    """True when the newest sample is older than two scrape intervals before `end` (or there is none)."""
    if not samples:
        return True
    return max(t for t, _ in samples) < end - 2 * scrape_interval
