"""`MetricSource` over Prometheus: exact per-subset increments from raw Istio counter samples.

Per interval [start, end) it sends one query per metric, both subsets at once:
`istio_requests_total{…,subset=~"base|canary"}[window+lookback]` and the same for
`istio_request_duration_milliseconds_bucket`, evaluated at `end`. An instant query of a range
selector returns the raw samples, which are differenced per series (analyzer.stats.counters) and
then summed; `increase()`/`rate()` are never used because they extrapolate to non-integers.
Errors are told apart client-side from the `response_code` / `grpc_response_status` labels, so
the requests query serves both counts.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog

from analyzer.config import CustomMetric, LatencyMetric, PrometheusSource, RolloutSpec
from analyzer.model import ISTIO_DEFAULT_EDGES_MS, CustomValue, DataGap, Observation, Resume, SubsetCounts
from analyzer.ports import SourceUnavailable
from analyzer.sources.prometheus import promql
from analyzer.sources.prometheus.client import PromClient, Series, first_label_match
from analyzer.stats.counters import BadSample, Sample, clean, edge_gap, is_stale, sum_increases

# How far before `start` to look for each series' reference sample. Prometheus' own staleness
# window is 5 minutes; a series with no sample in it is treated as born inside the window.
MIN_LOOKBACK_S = 300.0
# How far back to look for a series that seems new: one that existed before is back from a long gap.
RETURN_HISTORY_S = 6 * 3600.0
_POD_LABELS = ("pod", "instance")
_SERIES_ID_LABELS = ("pod", "instance", "response_code", "grpc_response_status", "le")


def _ts(moment: datetime) -> float:
    # Naive datetimes are read as UTC, never as local time (formats.md §5.2).
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _latency_metric(spec: RolloutSpec) -> LatencyMetric | None:
    return next((m for m in spec.analysis.metrics if isinstance(m, LatencyMetric)), None)


def _series_id(series: Series | _Clean, subset_label: str) -> str:
    name = series.labels.get("__name__", "?")
    keys = (subset_label, *_SERIES_ID_LABELS)
    body = ",".join(f'{k}="{series.labels[k]}"' for k in keys if k in series.labels)
    return f"{name}{{{body}}}"


@dataclass(frozen=True)
class _Clean:
    """A series with the samples a counter can have, and the ones it cannot."""

    labels: Mapping[str, str]
    samples: tuple[Sample, ...]
    bad: tuple[BadSample, ...]


def _cleaned(series: Sequence[Series]) -> list[_Clean]:
    return [_Clean(s.labels, *clean(s.samples)) for s in series]


def _gap(
    by_side: Mapping[str, tuple[Sequence[_Clean], Sequence[_Clean]]], subset_label: str, t0: float, t1: float,
    scrape: float, grace: float,
) -> DataGap | None:
    """The window's gap, if any: bad values in it first, then a side missing samples at an edge."""
    found: list[tuple[str, DataGap]] = []
    for side, (req, hist) in by_side.items():
        series = (*req, *hist)
        bad = [(s, b) for s in series for b in s.bad if t0 <= b.t < t1]
        if bad:
            s, b = bad[0]
            more = f" ({len(bad) - 1} more bad samples)" if len(bad) > 1 else ""
            why = f"{side}: {_series_id(s, subset_label)} has value {b.why} at {b.t:.3f}{more}"
            found.append((side, DataGap(side, why, Resume.END, unreadable=True)))
            continue
        edge = edge_gap({_series_id(s, subset_label): s.samples for s in series}, t0, t1, scrape, grace)
        if edge is not None:
            why = f"{side}: {edge.why}"
            found.append((side, DataGap(side, why, Resume.START if edge.at_end else Resume.END)))
    if not found:
        return None
    if len(found) == 1:
        return found[0][1]
    # Both sides: wait for the end edge if either lacks it; unreadable only if both are.
    resume = Resume.START if any(g.resume is Resume.START for _, g in found) else Resume.END
    return DataGap("both", "; ".join(g.why for _, g in found), resume, all(g.unreadable for _, g in found))


def _label_set(labels: Mapping[str, str]) -> frozenset[tuple[str, str]]:
    return frozenset((k, v) for k, v in labels.items() if k != "__name__")


def _returned_gap(
    by_side: Mapping[str, tuple[Sequence[_Clean], Sequence[_Clean]]], subset_label: str, returned: set[str],
    lookback: float,
) -> DataGap | None:
    for side, (req, hist) in by_side.items():
        back = sorted(name for s in (*req, *hist) if (name := _series_id(s, subset_label)) in returned)
        if back:
            more = f" and {len(back) - 1} more" if len(back) > 1 else ""
            return DataGap(side, f"{side}: {len(back)} series came back after more than {lookback:g}s without "
                           f"samples: {back[0]}{more}", Resume.END)
    return None


def _le(series: Series | _Clean) -> float | None:
    try:
        return float(series.labels.get("le", "nan").replace("+Inf", "inf"))
    except ValueError:
        return None


class PrometheusMetricSource:
    """Implements `analyzer.ports.MetricSource`.

    The connection comes from `spec.sources.metrics` when it is a `PrometheusSource`, else from
    `default`. Call `observe` for an interval only once a scrape past `end` has happened (lag one
    scrape interval), or the interval's last increments are not stored yet.
    """

    def __init__(
        self,
        default: PrometheusSource | None = None,
        *,
        backoff_s: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._default = default or PrometheusSource()
        self._backoff_s = backoff_s
        self._sleep = sleep
        self._clients: dict[PrometheusSource, PromClient] = {}

    def _config(self, spec: RolloutSpec) -> PrometheusSource:
        metrics = spec.sources.metrics
        return metrics if isinstance(metrics, PrometheusSource) else self._default

    def _client(self, config: PrometheusSource) -> PromClient:
        if config not in self._clients:
            self._clients[config] = PromClient(config, backoff_s=self._backoff_s, sleep=self._sleep)
        return self._clients[config]

    def query_lag(self, spec: RolloutSpec) -> float:
        """A scrape stamped just before a moment may be stored just after it: ask one scrape interval later."""
        return self._config(spec).scrape_interval

    def observe(self, spec: RolloutSpec, start: datetime, end: datetime) -> Observation:
        config = self._config(spec)
        sel = promql.selection(spec, config)
        client = self._client(config)
        t0, t1 = _ts(start), _ts(end)
        if t1 <= t0:
            raise ValueError(f"empty interval [{start}, {end})")
        log = structlog.get_logger(__name__).bind(target=spec.name, start=start.isoformat(), end=end.isoformat())
        lookback = max(MIN_LOOKBACK_S, 4 * config.scrape_interval)
        # The range reaches `lookback` before the window's start however long the window is, so after a
        # gap (the engine resumes from the last edge both subsets had) every reference sample is found.
        span = (t1 - t0) + lookback
        latency = _latency_metric(spec)
        edges = tuple(latency.bucket_edges) if latency else ISTIO_DEFAULT_EDGES_MS

        requests = _cleaned(client.raw_series(sel.raw_samples(promql.REQUESTS_METRIC, span), t1))
        buckets = _cleaned(client.raw_series(sel.raw_samples(promql.BUCKET_METRIC, span), t1)) if latency else []
        errors = promql.ErrorDefinition.from_spec(spec)
        subsets = {"baseline": sel.baseline, "canary": sel.canary}
        by_side = {
            side: ([s for s in requests if s.labels.get(sel.subset_label) == value],
                   [s for s in buckets if s.labels.get(sel.subset_label) == value])
            for side, value in subsets.items()
        }

        def counts(side: str) -> SubsetCounts | None:
            req, hist = by_side[side]
            if not req or (latency and not hist):
                log.info("subset_has_no_series", subset=side, requests=len(req), buckets=len(hist))
                return None
            return SubsetCounts(
                requests=sum_increases((s.samples for s in req), t0, t1),
                errors=sum_increases((s.samples for s in req if errors.is_error(s.labels)), t0, t1),
                latency_le=self._latency_le(hist, edges, t0, t1) if latency else (),
            )

        stale = sorted(
            {_series_id(s, sel.subset_label) for s in (*requests, *buckets)
             if is_stale(s.samples, t1, config.scrape_interval) and s.samples and s.samples[-1][0] >= t1 - lookback}
        )
        if stale:
            log.info("stale_series", count=len(stale))
        custom = self._custom(spec, client, sel, t0, t1)
        gap = None
        if all(req and (hist or not latency) for req, hist in by_side.values()):
            gap = _gap(by_side, sel.subset_label, t0, t1, config.scrape_interval, lookback)
        if gap is None and all(req for req, _ in by_side.values()):
            returned = self._returned(client, sel, (requests, buckets), t0, t0 - lookback)
            gap = _returned_gap(by_side, sel.subset_label, returned, lookback)
        if gap is not None:
            log.info("window_gap", subset=gap.subset, why=gap.why, resume=gap.resume.value)
            return Observation(start=start, end=end, baseline=None, canary=None, edges=edges, custom=custom,
                               stale_series=tuple(stale), gap=gap)
        return Observation(
            start=start,
            end=end,
            baseline=counts("baseline"),
            canary=counts("canary"),
            edges=edges,
            custom=custom,
            stale_series=tuple(stale),
        )

    @staticmethod
    def _returned(
        client: PromClient, sel: promql.Selection, metrics: tuple[Sequence[_Clean], Sequence[_Clean]], t0: float,
        before: float,
    ) -> set[str]:
        """Series first seen inside the window that existed before the range: back from a gap longer than the lookback.

        Such a series' first sample is no count from 0 (its history was counted in earlier windows),
        though it looks like a pod born inside the window. Asked only when new series show up.
        """
        out: set[str] = set()
        for metric, series in zip((promql.REQUESTS_METRIC, promql.BUCKET_METRIC), metrics, strict=True):
            new = [s for s in series if s.samples and s.samples[0][0] >= t0]
            label = next((k for k in _POD_LABELS if new and all(k in s.labels for s in new)), None)
            if label is None:
                continue
            pods = sorted({s.labels[label] for s in new})
            query = sel.sample_counts(metric, label, pods, RETURN_HISTORY_S)
            seen = {_label_set(labels) for labels, count in client.instant(query, before) if count > 0}
            out |= {_series_id(s, sel.subset_label) for s in new if _label_set(s.labels) in seen}
        return out

    @staticmethod
    def _latency_le(hist: Sequence[_Clean], edges: Sequence[float], t0: float, t1: float) -> tuple[int, ...]:
        by_le: dict[float, list[_Clean]] = {}
        for s in hist:
            le = _le(s)
            if le is not None:
                by_le.setdefault(le, []).append(s)
        out = []
        for edge in (*edges, math.inf):
            if edge not in by_le:
                # A missing edge would silently read as zero slow requests: refuse instead.
                raise SourceUnavailable(
                    f"histogram has no bucket le={edge:g}; set bucketEdges to the buckets the proxies export"
                )
            out.append(sum_increases((s.samples for s in by_le[edge]), t0, t1))
        return tuple(out)

    @staticmethod
    def _custom(
        spec: RolloutSpec, client: PromClient, sel: promql.Selection, t0: float, t1: float
    ) -> dict[str, CustomValue]:
        # (key in Observation.custom, template, where it is in the spec): custom metrics and Kayenta metrics.
        queries = [(m.name, m.query, f"analysis.metrics[{m.name}].query")
                   for m in spec.analysis.metrics if isinstance(m, CustomMetric)]
        if spec.analysis.kayenta is not None:
            queries += [(m.observation_key, m.query, f"analysis.kayenta.metrics[{m.name}].query")
                        for m in spec.analysis.kayenta.metrics]
        out: dict[str, CustomValue] = {}
        for key, template, what in queries:
            values = []
            for subset in (sel.baseline, sel.canary):
                query = promql.render_template(template, promql.template_values(sel, subset, t1 - t0), what)
                values.append(first_label_match(client.instant(query, t1), sel.subset_label, subset))
            out[key] = CustomValue(baseline=values[0], canary=values[1])
        return out
