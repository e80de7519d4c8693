"""Per-series differencing with the reset rule, summing after differencing, staleness."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analyzer.stats.counters import (
    as_count,
    clean,
    edge_gap,
    is_stale,
    reset_delta,
    scrape_period,
    series_deltas,
    sum_increases,
    value_problem,
    window_increase,
)


def test_reset_delta_counts_growth_and_treats_a_drop_as_a_restart():
    assert reset_delta(10, 15) == 5
    assert reset_delta(10, 10) == 0
    assert reset_delta(10, 3) == 3  # restarted from 0, then 3 requests


def test_series_deltas_first_sample_counts_from_zero_only_when_asked():
    assert series_deltas([5, 7, 2], from_zero=True) == [5, 2, 2]
    assert series_deltas([5, 7, 2], from_zero=False) == [0, 2, 2]


def test_window_uses_the_last_sample_before_start_as_reference():
    samples = [(0.0, 100.0), (10.0, 110.0), (20.0, 130.0), (30.0, 5.0), (40.0, 9.0)]
    assert window_increase(samples, 15.0, 45.0) == 20 + 5 + 4
    assert window_increase(samples, 0.0, 15.0) == 110  # no earlier sample: born inside, from 0
    assert window_increase(samples, 41.0, 50.0) == 0  # nothing inside


def test_window_is_half_open_so_a_sample_on_a_boundary_is_counted_once():
    samples = [(0.0, 1.0), (10.0, 4.0), (20.0, 9.0)]
    assert window_increase(samples, 0.0, 10.0) == 1
    assert window_increase(samples, 10.0, 20.0) == 3
    assert window_increase(samples, 20.0, 30.0) == 5


def test_summing_raw_counters_first_would_be_wrong_but_differencing_first_is_exact():
    restarted = [(0.0, 50.0), (10.0, 60.0), (20.0, 2.0)]  # pod restart: 60 -> 0 -> 2
    steady = [(0.0, 40.0), (10.0, 45.0), (20.0, 48.0)]
    assert sum_increases([restarted, steady], 5.0, 25.0) == (10 + 2) + (5 + 3)
    summed_first = [(t, a + b) for (t, a), (_, b) in zip(restarted, steady, strict=True)]
    assert window_increase(summed_first, 5.0, 25.0) != 20  # 90 -> 105 -> 50: the bug the rule avoids


def test_as_count_rejects_fractions_and_nan():
    assert as_count(12.0) == 12
    with pytest.raises(ValueError):
        as_count(1.5)
    with pytest.raises(ValueError):
        as_count(math.nan)


def test_stale_when_newest_sample_is_older_than_two_scrape_intervals():
    samples = [(0.0, 1.0), (100.0, 2.0)]
    assert not is_stale(samples, end=129.0, scrape_interval=15.0)
    assert is_stale(samples, end=131.0, scrape_interval=15.0)
    assert is_stale([], end=1.0, scrape_interval=15.0)


# ---- property: a counter built from true increments, with detectable resets, differences back exactly ----


@st.composite
def counter_runs(draw):
    """True per-scrape increments and the counter values a pod would export, resets included."""
    n = draw(st.integers(2, 40))
    increments = draw(st.lists(st.integers(0, 1000), min_size=n, max_size=n))
    resets = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    values: list[float] = []
    value = draw(st.integers(0, 10_000))  # history before the run
    history = value
    true: list[int] = []
    for i, (inc, reset) in enumerate(zip(increments, resets, strict=True)):
        if i and reset and inc < values[-1]:  # only resets the rule can see: the new value is lower
            value = inc
        else:
            value += inc
        values.append(float(value))
        true.append(inc)
    times = [10.0 * (i + 1) for i in range(n)]
    # A reference sample at t=0 carries the history; the run's increments start after it.
    return [(0.0, float(history)), *zip(times, values, strict=True)], true, times


@settings(max_examples=200, deadline=None)
@given(counter_runs(), st.data())
def test_windows_partition_the_true_increments_exactly(run, data):
    samples, true, times = run
    cuts = sorted(set(data.draw(st.lists(st.sampled_from(times), max_size=5))))
    bounds = [5.0, *cuts, times[-1] + 5.0]
    total = 0
    for start, end in itertools.pairwise(bounds):
        expected = sum(inc for t, inc in zip(times, true, strict=True) if start <= t < end)
        got = as_count(window_increase(samples, start, end))
        assert got == expected
        assert got >= 0
        total += got
    assert total == sum(true)


@settings(max_examples=100, deadline=None)
@given(st.lists(counter_runs(), min_size=1, max_size=5))
def test_sum_after_differencing_equals_sum_of_true_increments(runs):
    end = max(r[2][-1] for r in runs) + 1
    assert sum_increases([r[0] for r in runs], 5.0, end) == sum(sum(r[1]) for r in runs)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 10**6), min_size=1, max_size=30))
def test_a_series_born_inside_the_window_counts_its_first_sample(values):
    cumulative = [float(sum(values[: i + 1])) for i in range(len(values))]
    samples = [(float(i), v) for i, v in enumerate(cumulative)]
    assert as_count(window_increase(samples, 0.0, float(len(values)))) == sum(values)


# ---- edges (statistics.md §5.7): one subset's samples at both edges of a window ----


def scraped(first: float, last: float, every: float = 15.0, value: float = 0.0) -> list[tuple[float, float]]:
    out, t = [], first
    while t <= last:
        out.append((t, value))
        value += 10
        t += every
    return out


def test_edges_present_for_every_series_is_no_gap():
    series = {"a": scraped(7, 200), "b": scraped(12, 200)}
    assert edge_gap(series, 60, 120, 15, 300) is None


def test_a_subset_without_a_current_sample_at_the_end_waits_for_it():
    gap = edge_gap({"a": scraped(7, 90)}, 60, 120, 15, 300)  # last scrape 97: the one at 112 is missing
    assert gap is not None and gap.at_end and "before the window's end" in gap.why


def test_one_series_missing_scrapes_holds_the_window_until_the_grace_then_counts_as_gone():
    series = {"a": scraped(7, 430), "gone": scraped(7, 90)}
    held = edge_gap(series, 60, 120, 15, 300)
    assert held is not None and held.at_end and held.series == ("gone",)
    assert edge_gap(series, 60, 420, 15, 300) is None  # 330 s after its last sample: a removed pod


def test_a_side_resuming_after_missing_scrapes_skips_past_the_window():
    series = {"a": [*scraped(7, 37), *scraped(112, 200, value=500)]}  # scrapes 52..97 missed
    gap = edge_gap(series, 60, 120, 15, 300)
    assert gap is not None and not gap.at_end and "before the window's start" in gap.why
    mixed = {"a": scraped(7, 200), "b": [*scraped(7, 22), *scraped(97, 200, value=500)]}
    resumed = edge_gap(mixed, 60, 120, 15, 300)
    assert resumed is not None and not resumed.at_end and resumed.series == ("b",)


def test_a_series_born_inside_the_window_is_no_gap_and_the_period_is_the_series_own():
    assert edge_gap({"a": scraped(7, 200), "new": scraped(82, 200)}, 60, 120, 15, 300) is None
    # Scraped every 30 s although the spec says 15 s: its own spacing decides what is current.
    assert edge_gap({"a": scraped(5, 200, every=30)}, 60, 120, 15, 300) is None
    assert scrape_period([0, 30, 60, 95], 15) == 30 and scrape_period([0, 30], 15) == 15


def test_clean_rounds_float_noise_and_sets_aside_what_no_counter_has():
    good, bad = clean([(1, 5.0), (2, 7.0000000000001), (3, math.nan), (4, math.inf), (5, 8.5), (6, -1.0)])
    assert good == ((1, 5.0), (2, 7.0))
    assert [b.why.split(" ")[0] for b in bad] == ["NaN", "+Inf", "fractional", "negative"]
    assert value_problem(1e15) is None
