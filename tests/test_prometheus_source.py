"""PrometheusMetricSource against a real Prometheus (backfilled and live-scraping) and a misbehaving fake."""

from __future__ import annotations

import base64
import json
import random
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import pytest

from analyzer.config import RolloutSpec, SpecError, parse_spec
from analyzer.model import ISTIO_DEFAULT_EDGES_MS, Resume, SubsetCounts
from analyzer.ports import SourceUnavailable
from analyzer.replay import replay
from analyzer.sim.exposition import Layout, Plan, Pod, build_plan, exposition, openmetrics
from analyzer.sources.prometheus.promql import ErrorDefinition, escape_string, regex_alternation
from analyzer.sources.prometheus.source import PrometheusMetricSource

if TYPE_CHECKING:
    from tests.servers_prometheus import PrometheusLauncher, RunningPrometheus

pytest_plugins = ["tests.servers_prometheus"]

INTERVAL = 60
N_INTERVALS = 8
RESTART_BASELINE, RESTART_CANARY, NEW_CANARY_POD, REMOVED_BASELINE = 3, 5, 4, 6
Truth = dict[tuple[str, str], list[SubsetCounts]]


def random_truth(rng: random.Random, n: int, lo: int, hi: int, edges: tuple[float, ...]) -> list[SubsetCounts]:
    out = []
    for _ in range(n):
        requests = rng.randint(lo, hi)
        errors = rng.randint(0, max(1, requests // 40))
        le = sorted(rng.randint(0, requests) for _ in edges)
        out.append(SubsetCounts(requests, errors, (*le, requests)))
    return out


def scenario(start: float, seed: int = 7) -> tuple[Truth, Plan]:
    """Resets, jitter, a new canary pod, a vanished baseline pod, both reporters, a look-alike service."""
    rng = random.Random(seed)
    edges = ISTIO_DEFAULT_EDGES_MS
    truth = {
        ("reviews", "v1"): random_truth(rng, N_INTERVALS, 300, 600, edges),
        ("reviews", "v2"): random_truth(rng, N_INTERVALS, 40, 150, edges),
        ("ratings", "v1"): random_truth(rng, N_INTERVALS, 10, 50, edges),
    }
    pods = [
        Pod("reviews-v1-a", "v1", born=-1, restart=RESTART_BASELINE),
        Pod("reviews-v1-b", "v1", born=-1, removed=REMOVED_BASELINE),
        Pod("reviews-v1-c", "v1", born=-1),
        Pod("reviews-v2-a", "v2"),
        Pod("reviews-v2-b", "v2", restart=RESTART_CANARY),
        Pod("reviews-v2-c", "v2", born=NEW_CANARY_POD),
        Pod("productpage-v1-x", "v1", reporter="source", born=-1),
        Pod("productpage-v1-y", "v1", reporter="source", born=-1),
        Pod("productpage-v1-x", "v2", reporter="source"),
        Pod("productpage-v1-y", "v2", reporter="source"),
        Pod("ratings-v1-a", "v1", service="ratings", born=-1),  # same version label, other service
    ]
    plan = build_plan(truth, pods, Layout(start=start, interval=INTERVAL, samples_per_interval=4, seed=seed), edges)
    return truth, plan


def make_spec(
    url: str, *, metrics: list[dict] | None = None, canary: str = "v2", min_dwell: int = 3,
    analysis: dict | None = None, **source: Any
) -> RolloutSpec:
    return parse_spec({
        "timing": {"interval": "1m", "minDwell": min_dwell},
        "metadata": {"name": "reviews"},
        "target": {"namespace": "bookinfo", "virtualService": "reviews", "host": "reviews.bookinfo.svc.cluster.local",
                   "baseline": {"subset": "v1"}, "canary": {"subset": canary}},
        "strategy": {"steps": [10, 50]},
        "analysis": {"metrics": metrics or [{"type": "error-rate"}, {"type": "latency", "sloMs": 500}],
                     **(analysis or {})},
        "sources": {"metrics": {"type": "prometheus", "url": url, "scrapeInterval": "15s", "timeout": "5s", **source}},
    })


def at(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def window(start: float, k: int) -> tuple[datetime, datetime]:
    return at(start + k * INTERVAL), at(start + (k + 1) * INTERVAL)


@pytest.fixture(scope="module")
def backfilled(prometheus_launcher: PrometheusLauncher) -> tuple[Truth, Plan, RunningPrometheus]:
    # Three hours back: well inside retention, clear of the head block Prometheus writes itself.
    start = float(int(time.time()) // 60 * 60 - 3 * 3600)
    truth, plan = scenario(start)
    return truth, plan, prometheus_launcher.backfilled(openmetrics(plan))


# ---- exact counts from a backfilled TSDB ----


@pytest.mark.prometheus
@pytest.mark.parametrize("reporter", ["destination", "source"])
def test_counts_equal_ground_truth_every_interval(backfilled, reporter):
    truth, plan, prom = backfilled
    spec = make_spec(prom.url, reporter=reporter)
    source = PrometheusMetricSource()
    for k in range(REMOVED_BASELINE):
        obs = source.observe(spec, *window(plan.layout.start, k))
        assert obs.gap is None, f"interval {k}: {obs.gap}"
        assert obs.baseline == truth[("reviews", "v1")][k], f"interval {k}"
        assert obs.canary == truth[("reviews", "v2")][k], f"interval {k}"
        assert obs.edges == ISTIO_DEFAULT_EDGES_MS


@pytest.mark.prometheus
def test_a_pod_that_stops_reporting_makes_a_gap_for_both_naming_it(backfilled):
    """Within the grace (the lookback) a silent pod may be missing scrapes: both sides hold, resuming from start."""
    _, plan, prom = backfilled
    source, spec = PrometheusMetricSource(), make_spec(prom.url)
    for k in range(REMOVED_BASELINE, N_INTERVALS):
        obs = source.observe(spec, *window(plan.layout.start, k))
        assert obs.gap is not None and obs.baseline is None and obs.canary is None, f"interval {k}"
        assert obs.gap.subset == "baseline" and obs.gap.resume is Resume.START
        assert 'pod="reviews-v1-b"' in obs.gap.why and "missed the last scrape" in obs.gap.why


@pytest.mark.prometheus
def test_one_long_window_equals_the_sum_of_its_intervals(backfilled):
    truth, plan, prom = backfilled
    spec = make_spec(prom.url)
    last = REMOVED_BASELINE - 1  # the last interval before a pod vanishes
    obs = PrometheusMetricSource().observe(spec, window(plan.layout.start, 0)[0], window(plan.layout.start, last)[1])
    expected = truth[("reviews", "v1")][0]
    for counts in truth[("reviews", "v1")][1:last + 1]:
        expected = expected + counts
    assert obs.baseline == expected


@pytest.mark.prometheus
def test_vanished_pod_is_reported_stale_only_after_it_vanished(backfilled):
    _, plan, prom = backfilled
    source, spec = PrometheusMetricSource(), make_spec(prom.url)
    for k in range(N_INTERVALS):
        stale = source.observe(spec, *window(plan.layout.start, k)).stale_series
        if k < REMOVED_BASELINE:
            assert stale == (), f"interval {k}"
        else:
            assert stale and all('pod="reviews-v1-b"' in s for s in stale), f"interval {k}: {stale}"


@pytest.mark.prometheus
def test_missing_subset_is_none_and_interval_without_data_has_none(backfilled):
    truth, plan, prom = backfilled
    source = PrometheusMetricSource()
    obs = source.observe(make_spec(prom.url, canary="v9"), *window(plan.layout.start, 2))
    assert obs.canary is None and obs.baseline == truth[("reviews", "v1")][2]
    assert not obs.has_data
    early = source.observe(make_spec(prom.url), at(plan.layout.start - 3600), at(plan.layout.start - 3000))
    assert early.baseline is None and early.canary is None


POD_COUNT = (
    'count(count by (pod) (istio_requests_total{reporter="destination",'
    'destination_workload_namespace="{{ namespace }}",destination_canonical_service="{{ service }}",'
    '{{ subset_label }}="{{ subset }}"}))'
)
NAN_QUERY = (
    'sum(istio_requests_total{destination_canonical_service="{{ service }}",{{ subset_label }}="{{ subset }}"})'
    " * 0 / 0"
)
EMPTY_QUERY = 'sum(istio_requests_total{response_code="999",{{ subset_label }}="{{ subset }}"})'


@pytest.mark.prometheus
def test_custom_queries_give_one_value_per_subset_and_none_for_nan_or_empty(backfilled):
    _, plan, prom = backfilled
    metrics = [
        {"type": "error-rate"},
        {"type": "custom", "name": "pods", "query": POD_COUNT, "min": 1},
        {"type": "custom", "name": "nan", "query": NAN_QUERY, "max": 1},
        {"type": "custom", "name": "empty", "query": EMPTY_QUERY, "max": 1},
    ]
    k = 5
    start, end = window(plan.layout.start, k)
    obs = PrometheusMetricSource().observe(make_spec(prom.url, metrics=metrics), start, end)

    def pods_seen(version: str) -> int:  # instant selectors look back 5 minutes
        t = end.timestamp()
        return len({p.name for p, states in plan.states.items() if p.reporter == "destination"
                    and p.service == "reviews" and p.version == version and any(t - 300 < s.t <= t for s in states)})

    assert (obs.custom["pods"].baseline, obs.custom["pods"].canary) == (pods_seen("v1"), pods_seen("v2"))
    assert obs.custom["nan"].baseline is None and obs.custom["nan"].canary is None
    assert obs.custom["empty"].baseline is None and obs.custom["empty"].canary is None
    assert obs.baseline is not None  # a custom metric's NaN does not void the counts


@pytest.mark.prometheus
def test_kayenta_metric_queries_reach_the_observation_like_custom_ones(backfilled):
    _, plan, prom = backfilled
    metrics = [{"type": "error-rate"}, {"type": "custom", "name": "pods", "query": POD_COUNT, "min": 1}]
    kayenta = {"judge": "kayenta", "kayenta": {"metrics": [
        {"name": "pods", "query": POD_COUNT}, {"name": "empty", "query": EMPTY_QUERY, "nanStrategy": "replace"}]}}
    start, end = window(plan.layout.start, 5)
    obs = PrometheusMetricSource().observe(make_spec(prom.url, metrics=metrics, analysis=kayenta), start, end)
    pods = obs.custom["kayenta/pods"]
    assert (pods.baseline, pods.canary) == (obs.custom["pods"].baseline, obs.custom["pods"].canary)
    assert pods.baseline is not None and pods.baseline > 0
    assert obs.custom["kayenta/empty"].baseline is None and obs.custom["kayenta/empty"].canary is None


def test_unknown_placeholder_in_a_kayenta_query_names_its_field(fake):
    kayenta = {"judge": "kayenta", "kayenta": {"metrics": [{"name": "x", "query": 'up{job="${scope}{{ job }}"}'}]}}
    fake.mode = "empty"
    with pytest.raises(SpecError, match=r"analysis\.kayenta\.metrics\[x\]\.query: unknown placeholder"):
        PrometheusMetricSource().observe(make_spec(fake.url, analysis=kayenta), at(1e9), at(1e9 + 60))


@pytest.mark.prometheus
def test_stopped_prometheus_raises_source_unavailable_after_bounded_retries(prometheus_launcher):
    prom = prometheus_launcher.start("global:\n  scrape_interval: 15s\n")
    prom.stop()
    sleeps: list[float] = []
    source = PrometheusMetricSource(backoff_s=0.01, sleep=sleeps.append)
    with pytest.raises(SourceUnavailable, match="after 3 attempts"):
        source.observe(make_spec(prom.url, retries=2), at(1e9), at(1e9 + 60))
    assert sleeps == [0.01, 0.02]


@pytest.mark.prometheus
def test_replay_over_the_backfilled_window_reports_data_quality(backfilled):
    _, plan, prom = backfilled
    start = at(plan.layout.start)
    # minDwell above the window length: the replay cannot pass early and must walk every interval.
    # Error rate only: the scenario's uniform latencies put ~half of both subsets above any SLO (a shared outage).
    spec = make_spec(prom.url, min_dwell=20, metrics=[{"type": "error-rate"}])
    report = replay(spec, PrometheusMetricSource(), start, window(start.timestamp(), 7)[1])
    dq = report.data_quality
    assert report.verdict == "inconclusive"
    assert (dq.intervals, dq.intervals_with_data) == (N_INTERVALS, REMOVED_BASELINE)
    # After the pod vanished, each window starts at the last edge both subsets had.
    assert [(g.start, g.end) for g in dq.gaps] == [(window(start.timestamp(), REMOVED_BASELINE)[0],
                                                    window(start.timestamp(), k)[1])
                                                   for k in range(REMOVED_BASELINE, N_INTERVALS)]
    assert all('pod="reviews-v1-b"' in g.why and g.kind.value == "edge" for g in dq.gaps)
    assert dq.stale_series and all('pod="reviews-v1-b"' in s for s in dq.stale_series)
    assert json.loads(json.dumps(report.to_json()))["data_quality"]["intervals"] == N_INTERVALS


# ---- injection ----


def test_unsafe_service_value_is_rejected_before_any_query():
    url = "http://127.0.0.1:9"  # discard port, nothing listens: a query would raise SourceUnavailable
    spec = make_spec(url, service='reviews"} or vector(1) or x{a="')
    with pytest.raises(SpecError, match="not a safe label value"):
        PrometheusMetricSource().observe(spec, at(1e9), at(1e9 + 60))
    with pytest.raises(SpecError, match="not a Prometheus label name"):
        PrometheusMetricSource().observe(make_spec(url, subsetLabel="a=~\".*\",b"), at(1e9), at(1e9 + 60))


def test_unknown_template_placeholder_is_rejected(fake):
    metrics = [{"type": "error-rate"}, {"type": "custom", "name": "x", "query": 'up{job="{{ job }}"}', "max": 1}]
    fake.mode = "empty"
    with pytest.raises(SpecError, match="unknown placeholder"):
        PrometheusMetricSource().observe(make_spec(fake.url, metrics=metrics), at(1e9), at(1e9 + 60))


def test_escaping_keeps_values_inside_their_string_and_regex():
    assert escape_string('a"b\\c') == 'a\\"b\\\\c'
    assert regex_alternation(["v1.2", "v2"]) == "v1\\.2|v2"


def test_error_definition_options():
    five, four, none, grpc = ({"response_code": "503"}, {"response_code": "404"}, {"response_code": "0"},
                              {"response_code": "200", "grpc_response_status": "14"})
    default = ErrorDefinition()
    assert [default.is_error(x) for x in (five, four, none, grpc)] == [True, False, False, False]
    everything = ErrorDefinition(include_no_response=True, include_grpc=True, include_4xx=True)
    assert [everything.is_error(x) for x in (five, four, none, grpc)] == [True, True, True, True]
    assert not everything.is_error({"response_code": "200", "grpc_response_status": "0"})


# ---- a misbehaving server: garbage, slowness, NaN samples, rejected queries ----


class FakePrometheus:
    def __init__(self) -> None:
        self.mode = "garbage"
        self.bad = "NaN"
        self.hits = 0
        self.auth: list[str | None] = []
        self.paths: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fake.hits += 1
                fake.auth.append(self.headers.get("Authorization"))
                fake.paths.append(self.path)
                status, body = fake.reply()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (the timeout test): expected

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def reply(self) -> tuple[int, bytes]:
        if self.mode == "slow":
            time.sleep(1.5)
        if self.mode == "garbage":
            return 200, b"<html>502 from some proxy</html>"
        if self.mode == "bad_query":
            return 400, b'{"status":"error","errorType":"bad_data","error":"parse error"}'
        if self.mode == "wrong_shape":
            return 200, b'{"status":"success","data":{"resultType":"matrix","result":{"oops":1}}}'
        result: list[dict] = []
        if self.mode == "bad_value":  # one baseline sample mid-window holds self.bad; every edge has samples
            labels = {"__name__": "istio_requests_total", "destination_canonical_revision": "v1", "pod": "p"}
            result = [{"metric": labels, "values": [[1e9 - 10, "5"], [1e9 + 15, "6"], [1e9 + 30, self.bad],
                                                    [1e9 + 50, "9"]]},
                      {"metric": {**labels, "destination_canonical_revision": "v2"},
                       "values": [[1e9 - 10, "3"], [1e9 + 15, "4"], [1e9 + 30, "5"], [1e9 + 50, "7"]]}]
        return 200, json.dumps({"status": "success", "data": {"resultType": "matrix", "result": result}}).encode()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def fake() -> Iterator[FakePrometheus]:
    server = FakePrometheus()
    yield server
    server.stop()


@pytest.mark.parametrize("mode", ["garbage", "wrong_shape"])
def test_malformed_reply_is_retried_then_source_unavailable(fake, mode):
    fake.mode = mode
    source = PrometheusMetricSource(backoff_s=0.0)
    with pytest.raises(SourceUnavailable, match="malformed reply"):
        source.observe(make_spec(fake.url, retries=2), at(1e9), at(1e9 + 60))
    assert fake.hits == 3


def test_slow_reply_past_timeout_is_source_unavailable(fake):
    fake.mode = "slow"
    began = time.monotonic()
    with pytest.raises(SourceUnavailable, match=r"no reply within 0\.3s"):
        PrometheusMetricSource(backoff_s=0.0).observe(
            make_spec(fake.url, retries=1, timeout=0.3), at(1e9), at(1e9 + 60)
        )
    assert fake.hits == 2
    assert time.monotonic() - began < 1.5  # two 0.3s timeouts, not two 1.5s replies


def test_rejected_query_is_not_retried(fake):
    fake.mode = "bad_query"
    with pytest.raises(SourceUnavailable, match="rejected"):
        PrometheusMetricSource(backoff_s=0.0).observe(make_spec(fake.url, retries=3), at(1e9), at(1e9 + 60))
    assert fake.hits == 1


@pytest.mark.parametrize(("bad", "why"), [("NaN", "NaN"), ("+Inf", "+Inf"), ("-Inf", "-Inf"), ("6.5", "fractional"),
                                          ("-2", "negative")])
def test_a_value_no_counter_has_makes_an_unreadable_gap_for_both(fake, bad, why):
    fake.mode, fake.bad = "bad_value", bad
    spec = make_spec(fake.url, metrics=[{"type": "error-rate"}])
    obs = PrometheusMetricSource().observe(spec, at(1e9), at(1e9 + 40))
    assert obs.baseline is None and obs.canary is None and not obs.has_data
    assert obs.gap is not None and obs.gap.subset == "baseline" and obs.gap.unreadable
    assert why in obs.gap.why and 'pod="p"' in obs.gap.why
    assert obs.gap.resume is Resume.END  # the end edge is good: the next window starts after the bad sample
    # The next window reads past it: the bad sample is dropped and the reference is the last good one.
    nxt = PrometheusMetricSource().observe(spec, at(1e9 + 40), at(1e9 + 60))
    assert nxt.gap is None and nxt.baseline == SubsetCounts(3, 0, ()) and nxt.canary == SubsetCounts(2, 0, ())


def test_a_value_within_float_rounding_of_a_whole_number_is_rounded(fake):
    fake.mode, fake.bad = "bad_value", "7.0000000000001"
    obs = PrometheusMetricSource().observe(make_spec(fake.url, metrics=[{"type": "error-rate"}]), at(1e9), at(1e9 + 60))
    assert obs.gap is None and obs.baseline == SubsetCounts(4, 0, ())


def test_credentials_are_read_from_files_and_path_prefix_is_used(fake, tmp_path):
    fake.mode = "empty"
    token, password = tmp_path / "token", tmp_path / "password"
    token.write_text("s3cret\n")
    password.write_text("pw\n")
    source = PrometheusMetricSource()
    source.observe(make_spec(fake.url, bearerTokenFile=str(token), pathPrefix="/prom/"), at(1e9), at(1e9 + 60))
    assert fake.auth == ["Bearer s3cret"] * 2
    assert all(p.startswith("/prom/api/v1/query?") for p in fake.paths)
    fake.auth.clear()
    source.observe(make_spec(fake.url, basicAuthUser="bob", basicAuthPasswordFile=str(password)), at(1e9), at(1e9 + 60))
    assert fake.auth == ["Basic " + base64.b64encode(b"bob:pw").decode()] * 2


# ---- live scraping: the same exactness with Prometheus' own scrape timestamps ----

LIVE_INTERVAL = 6.0


@pytest.mark.prometheus
def test_live_scrape_counts_equal_ground_truth(live_prometheus, metrics_server):
    rng = random.Random(11)
    edges = (100.0, 250.0, 500.0)
    n = 3
    truth = {
        ("reviews", "v1"): random_truth(rng, n, 50, 100, edges),
        ("reviews", "v2"): random_truth(rng, n, 20, 40, edges),
    }
    pods = [Pod("reviews-v1-a", "v1", born=-1, restart=1), Pod("reviews-v1-b", "v1", born=-1),
            Pod("reviews-v2-a", "v2"), Pod("reviews-v2-b", "v2", born=2)]
    start = float(int(time.time()) + 3)  # the baseline's history is scraped before the run starts
    # Changes fall in the first 60% of each interval, 1.65s apart: every state is scraped (1s) inside its interval.
    layout = Layout(start=start, interval=LIVE_INTERVAL, samples_per_interval=2, jitter=0.0, span=(0.05, 0.6))
    plan = build_plan(truth, pods, layout, edges)
    metrics_server.set_render(lambda: exposition(plan, time.time()))
    time.sleep(max(0.0, start + n * LIVE_INTERVAL + 2.5 - time.time()))  # one scrape past the end, and a margin
    metrics = [{"type": "error-rate"}, {"type": "latency", "sloMs": 250, "bucketEdges": list(edges)}]
    spec = make_spec(live_prometheus.url, metrics=metrics, scrapeInterval="1s")
    source = PrometheusMetricSource()
    for k in range(n):
        obs = source.observe(spec, at(start + k * LIVE_INTERVAL), at(start + (k + 1) * LIVE_INTERVAL))
        assert obs.baseline == truth[("reviews", "v1")][k], f"interval {k}"
        assert obs.canary == truth[("reviews", "v2")][k], f"interval {k}"
        assert obs.stale_series == ()
