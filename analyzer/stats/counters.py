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
* Values a counter cannot hold (NaN, ±Inf, negatives, fractions beyond float rounding) are taken out
  of the series by `clean` and reported; the window holding one is a gap (statistics.md §9).
* Edges (statistics.md §5.7, "Per-subset gaps"): a subset's increments over [start, end) only cover
  that span when it has samples just before both edges. `edge_gap` says when it does not.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

Sample = tuple[float, float]
# Prometheus sends float64s; an integer counter is exact up to 2**53, so more than this is not rounding.
WHOLE_TOLERANCE = 1e-9
# A sample is from the last scrape before an edge when it is at most this many scrape periods old: the
# margin absorbs scrape-start jitter, while one missed scrape makes the age at least a whole period more.
EDGE_SLACK = 1.1


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


def value_problem(value: float) -> str | None:
    """Why a sample cannot be a request counter's value, or None when it can."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value < 0:
        return f"negative ({value:g})"
    if abs(value - round(value)) > WHOLE_TOLERANCE * max(1.0, abs(value)):
        return f"fractional ({value!r}): not a request counter"
    return None


@dataclass(frozen=True)
class BadSample:
    t: float
    value: float
    why: str


def clean(samples: Sequence[Sample]) -> tuple[tuple[Sample, ...], tuple[BadSample, ...]]:
    """The samples a counter can have, rounded to whole numbers, and the ones it cannot."""
    good: list[Sample] = []
    bad: list[BadSample] = []
    for t, v in samples:
        why = value_problem(v)
        if why is None:
            good.append((t, float(round(v))))
        else:
            bad.append(BadSample(t, v, why))
    return tuple(good), tuple(bad)


def as_count(value: float) -> int:
    """An exact integer from a counter increment; counters of requests are whole numbers."""
    if math.isnan(value) or math.isinf(value):
        raise ValueError(f"counter increment {value} is not a number")
    count = round(value)
    if abs(value - count) > WHOLE_TOLERANCE * max(1.0, abs(value)):
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


@dataclass(frozen=True)
class EdgeGap:
    """One subset's reason why [start, end) is a gap; `at_end` when the end edge is what is missing."""

    why: str
    at_end: bool
    series: tuple[str, ...] = ()


def scrape_period(times: Sequence[float], default: float) -> float:
    """A series' own scrape period: the median spacing of its samples (`default` with fewer than three)."""
    if len(times) < 3:
        return default
    gaps = sorted(b - a for a, b in itertools.pairwise(times))
    return gaps[len(gaps) // 2]


def edge_gap(
    series: Mapping[str, Sequence[Sample]], start: float, end: float, scrape: float, grace: float
) -> EdgeGap | None:
    """Whether one subset's series have samples at both edges of [start, end); None when they do.

    `series` maps a series name to its cleaned, time-sorted samples. A series scraped every P seconds
    has a sample in the last P seconds before any instant, so its last sample before an edge is
    *current* when it is at most `EDGE_SLACK` × P old (P from its own spacing, else `scrape`). One
    missed scrape at an edge would shift that side's span by P against the other's, which at high
    traffic is a visible sample-ratio mismatch. Rules, end edge first, because a missing end means
    waiting for data rather than skipping past it:
    * no series of the subset is current at the end edge: its scrapes stopped (or lag);
    * a series is not current at the end edge but was within `grace`: it stopped reporting while the
      rest went on (a pod missing scrapes). After `grace` it is taken as gone (a removed pod) and no
      longer holds the window, else one removed pod would hold every window after it;
    * the subset has samples before `start` but none current at it: its first increments reach back
      into a gap;
    * a series with samples in the window is not current at `start`: it resumed after missing scrapes,
      so its first increment covers time before `start`. (A series with no sample before `start` at
      all was born inside the window and counts from 0.)
    """
    ends: dict[str, float] = {}  # series -> age of its last sample before `end`
    starts: dict[str, float] = {}  # series -> age of its last sample before `start`
    current: dict[str, float] = {}  # series -> the age up to which a sample is current
    inside: set[str] = set()
    for name, samples in series.items():
        times = [t for t, _ in samples]
        current[name] = EDGE_SLACK * scrape_period(times, scrape)
        before_end = [t for t in times if t < end]
        if before_end:
            ends[name] = end - before_end[-1]
        before_start = [t for t in times if t < start]
        if before_start:
            starts[name] = start - before_start[-1]
        if any(start <= t < end for t in times):
            inside.add(name)
    if not ends:
        return EdgeGap("no samples before the window's end", at_end=True)
    if not any(age <= current[name] for name, age in ends.items()):
        newest = min(ends.values())
        return EdgeGap(f"no sample from the last scrape before the window's end (newest {newest:.0f}s before it)",
                       at_end=True)
    stopped = sorted(name for name, age in ends.items() if current[name] < age <= grace)
    if stopped:
        return EdgeGap(f"{len(stopped)} series missed the last scrape before the window's end: {stopped[0]}"
                       + (f" and {len(stopped) - 1} more" if len(stopped) > 1 else ""), at_end=True,
                       series=tuple(stopped))
    if starts and not any(age <= current[name] for name, age in starts.items()):
        return EdgeGap(f"no sample from the last scrape before the window's start (newest "
                       f"{min(starts.values()):.0f}s before it)", at_end=False)
    resumed = sorted(name for name, age in starts.items() if age > current[name] and name in inside)
    if resumed:
        return EdgeGap(f"{len(resumed)} series resumed after missing scrapes: {resumed[0]}"
                       + (f" and {len(resumed) - 1} more" if len(resumed) > 1 else ""), at_end=False,
                       series=tuple(resumed))
    return None
