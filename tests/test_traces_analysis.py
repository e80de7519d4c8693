"""Unit tests of the pure trace analysis: tests, trace structure, critical path, exceedance counts, verdicts."""

from __future__ import annotations

import json
import math
from itertools import pairwise

import numpy as np
import pytest
from scipy import stats

from analyzer.model import Span, Verdict
from analyzer.traces import analyze_traces, log_edges, trace_exceedance_counts
from analyzer.traces.stats import MAX_PAIRS, bh_reject, error_ratio, hodges_lehmann_log, presence_greater
from analyzer.traces.structure import build_traces, critical_path, downstream_calls


def _span(trace: str, sid: str, parent: str | None, service: str, kind: str, start: int, end: int, *,
          subset: str | None = None, error: bool = False, op: str | None = None, upstream: str = "") -> Span:
    app = service.split(".")[0]
    attrs = {"http.method": "GET", "upstream_cluster": upstream}
    return Span(trace, sid, parent, service, op or f"{app}.bookinfo.svc.cluster.local:9080/*", kind, start,
                end - start, error, 503 if error else 200, subset, attrs)


def test_hodges_lehmann_recovers_an_exact_multiplicative_shift() -> None:
    y = np.random.default_rng(1).lognormal(3.0, 0.5, 300)
    shift = hodges_lehmann_log(1.5 * y, y)
    assert shift.factor == pytest.approx(1.5, rel=1e-9)
    assert shift.ci[0] < 1.5 < shift.ci[1]
    assert shift.p_value < 1e-6


def test_hodges_lehmann_ci_covers_no_shift_about_95_percent() -> None:
    rng = np.random.default_rng(2)
    covered = sum(
        (s := hodges_lehmann_log(rng.lognormal(0, 1, 30), rng.lognormal(0, 1, 80))).ci[0] <= 1.0 <= s.ci[1]
        for _ in range(400)
    )
    assert 0.92 <= covered / 400 <= 0.98


def test_hodges_lehmann_subsample_of_pairs_agrees_with_all_pairs() -> None:
    rng = np.random.default_rng(3)
    x, y = rng.lognormal(0.2, 0.5, 1500), rng.lognormal(0.0, 0.5, 1000)
    assert x.size * y.size > MAX_PAIRS
    exact = math.exp(np.median(np.subtract.outer(np.log(x), np.log(y))))
    assert hodges_lehmann_log(x, y).factor == pytest.approx(exact, rel=0.01)


def test_error_ratio_is_the_conditional_binomial() -> None:
    r = error_ratio(10, 100, 10, 900)
    assert r.ratio == pytest.approx(9.0)
    assert r.p_value == pytest.approx(stats.binomtest(10, 20, 0.1, alternative="greater").pvalue)
    assert r.ci[0] < 9.0 < r.ci[1]
    assert error_ratio(0, 100, 0, 100).p_value == 1.0


def test_presence_and_bh() -> None:
    assert presence_greater(12, 40, 0, 400) < 1e-8
    assert presence_greater(0, 40, 0, 400) == 1.0
    assert bh_reject([0.01, 0.02, 0.03, 0.5], 0.05) == [True, True, True, False]
    assert bh_reject([0.01, 0.04, 0.045, 0.5], 0.05) == [True, False, False, False]


def _trace(trace: str, subset: str, *, ratings: int = 1, mysql: bool = False, slow: float = 1.0) -> list[Span]:
    """productpage -> reviews (subset) -> ratings x N [-> mysql]; times in µs, calls back to back."""
    spans = [_span(trace, f"{trace}-pp", None, "productpage.bookinfo", "server", 0, 0)]
    spans.append(_span(trace, f"{trace}-c0", f"{trace}-pp", "productpage.bookinfo", "client", 100, 0,
                       upstream=f"outbound|9080|{subset}|reviews.bookinfo.svc.cluster.local", subset=subset))
    spans.append(_span(trace, f"{trace}-rv", f"{trace}-c0", "reviews.bookinfo", "server", 200, 0, subset=subset))
    cursor = 1200
    for i in range(ratings):
        end = cursor + 200 + int(2000 * slow)
        spans.append(_span(trace, f"{trace}-c{i + 1}", f"{trace}-rv", "reviews.bookinfo", "client", cursor, end,
                           subset=subset))
        spans.append(_span(trace, f"{trace}-rt{i}", f"{trace}-c{i + 1}", "ratings.bookinfo", "server",
                           cursor + 100, end - 100))
        cursor = end
    if mysql:
        spans.append(_span(trace, f"{trace}-db", f"{trace}-rv", "reviews.bookinfo", "client", cursor, cursor + 3000,
                           subset=subset, upstream="outbound|3306||mysql.bookinfo.svc.cluster.local"))
        cursor += 3000
    # close the parents around their children
    rv_end, c0_end, pp_end = cursor + 1000, cursor + 1100, cursor + 2000
    fixed = {f"{trace}-rv": (200, rv_end), f"{trace}-c0": (100, c0_end), f"{trace}-pp": (0, pp_end)}
    return [
        Span(s.trace_id, s.span_id, s.parent_id, s.service, s.operation, s.kind, fixed[s.span_id][0],
             fixed[s.span_id][1] - fixed[s.span_id][0], s.error, s.http_status, s.subset, s.attributes)
        if s.span_id in fixed else s
        for s in spans
    ]


def test_build_traces_labels_and_arms() -> None:
    (view,) = build_traces(_trace("t1", "v2", ratings=2, mysql=True), ("v1", "v2"))
    assert view.arm == "v2" and view.anchor.span_id == "t1-rv"  # the server span, not the caller's client span
    assert view.labels["t1-rt0"] == "GET reviews:9080/* -> ratings"
    assert view.labels["t1-rv"] == "GET productpage:9080/* -> reviews"
    assert view.labels["t1-pp"] == "GET productpage:9080/*"
    # mysql is outside the mesh: only the caller's client span shows the call.
    assert downstream_calls(view) == {"GET reviews:9080/* -> ratings": 2, "GET reviews:9080/* -> mysql": 1}
    assert build_traces(_trace("t2", "v3"), ("v1", "v2")) == []


def test_critical_path_sequential_and_parallel_children() -> None:
    a = _span("t", "a", None, "reviews.bookinfo", "server", 0, 100, subset="v1")
    c1 = _span("t", "c1", "a", "reviews.bookinfo", "client", 10, 40, subset="v1",
               upstream="outbound|9080|v1|ratings.bookinfo.svc.cluster.local")
    s1 = _span("t", "s1", "c1", "ratings.bookinfo", "server", 12, 38)
    c2 = _span("t", "c2", "a", "reviews.bookinfo", "client", 50, 90, subset="v1",
               upstream="outbound|3306||mysql.bookinfo.svc.cluster.local")
    (view,) = build_traces([a, c1, s1, c2], ("v1", "v2"))
    path = critical_path(view)
    assert path == {"GET reviews:9080/*": 30, "GET reviews:9080/* -> ratings": 30, "GET reviews:9080/* -> mysql": 40}

    # c3 runs in parallel with c1 and ends first: it is off the critical path.
    c1b = _span("t", "c1", "a", "reviews.bookinfo", "client", 10, 60, subset="v1",
                upstream="outbound|9080|v1|ratings.bookinfo.svc.cluster.local")
    c3 = _span("t", "c3", "a", "reviews.bookinfo", "client", 20, 50, subset="v1",
               upstream="outbound|3306||mysql.bookinfo.svc.cluster.local")
    (view,) = build_traces([a, c1b, c3], ("v1", "v2"))
    assert critical_path(view) == {"GET reviews:9080/*": 50, "GET reviews:9080/* -> ratings": 50}


def test_analyze_hand_built_traces_finds_new_call_and_n_plus_one() -> None:
    spans = [s for i in range(40) for s in _trace(f"b{i}", "v1")]
    spans += [s for i in range(20) for s in _trace(f"c{i}", "v2", ratings=3, mysql=i % 2 == 0)]
    report = analyze_traces(spans, "v1", "v2")
    assert (report.traces_baseline, report.traces_canary) == (40, 20)
    kinds = {f.kind: f for f in report.findings}
    assert kinds["new_call"].reason == "new downstream call in canary: mysql (10 of 20 traces)"
    assert kinds["n_plus_one"].label == "GET reviews:9080/* -> ratings"
    assert kinds["n_plus_one"].effect == pytest.approx(3.0)
    ratings = next(o for o in report.operations if o.label == "GET reviews:9080/* -> ratings")
    assert ratings.critical_path_canary > ratings.critical_path_baseline


def test_verdicts_are_diagnostics_only() -> None:
    spans = [s for i in range(40) for s in _trace(f"b{i}", "v1")]
    spans += [s for i in range(20) for s in _trace(f"c{i}", "v2", mysql=True)]
    verdicts = analyze_traces(spans, "v1", "v2").verdicts()
    assert verdicts[0].metric == "traces/summary" and verdicts[0].verdict == Verdict.FAIL
    assert all(v.gate is False for v in verdicts)
    assert any(v.metric.startswith("traces/new_call:") and "mysql" in v.reason for v in verdicts[1:])


def test_finding_rows_round_trip_to_the_findings_and_their_json() -> None:
    from analyzer.store import codec
    from analyzer.traces import findings_in, stored_traces

    spans = [s for i in range(40) for s in _trace(f"b{i}", "v1")]
    spans += [s for i in range(20) for s in _trace(f"c{i}", "v2", ratings=3, mysql=i % 2 == 0)]
    report = analyze_traces(spans, "v1", "v2")
    stored = [codec.decode_verdict(json.loads(json.dumps(codec.encode_verdict(v)))) for v in report.verdicts()]
    assert findings_in(stored) == list(report.findings)
    assert stored_traces(stored) == report.to_json()
    data = report.to_json()
    assert (data["canary_traces"], data["baseline_traces"]) == (20, 40)
    kinds = {f["kind"]: f for f in data["findings"]}
    assert {"new_call", "n_plus_one"} <= set(kinds) <= {"new_call", "n_plus_one", "slower"}
    assert kinds["n_plus_one"]["operation"] == "GET reviews:9080/* -> ratings"
    assert kinds["n_plus_one"]["effect"] == pytest.approx(3.0)
    assert kinds["new_call"]["reason"] == "new downstream call in canary: mysql (10 of 20 traces)"

    few = analyze_traces([s for i in range(3) for s in _trace(f"c{i}", "v2")], "v1", "v2").verdicts()
    assert [v.verdict for v in few] == [Verdict.NO_DATA]


def test_exceedance_counts_per_edge() -> None:
    spans = [s for i, slow in enumerate([1, 1, 2, 4]) for s in _trace(f"c{i}", "v2", slow=slow)]
    spans += [s for i in range(3) for s in _trace(f"b{i}", "v1")]
    # reviews server span durations: 2200 + 2000*slow µs -> 4.2, 4.2, 6.2, 10.2 ms canary; 4.2 ms baseline
    counts = trace_exceedance_counts(spans, [4.0, 5.0, 10.0], "v1", "v2")
    assert counts == {4.0: (4, 4, 3, 3), 5.0: (4, 2, 3, 0), 10.0: (4, 1, 3, 0)}
    edges = log_edges(1.0, 10_000.0, 32)
    assert len(edges) == 32 and edges[0] == 1.0 and edges[-1] == 10_000.0
    assert all(b > a for a, b in pairwise(edges))


def test_a_long_operation_name_fits_the_store_and_survives_whole() -> None:
    from analyzer.traces import Finding, FindingKind

    label = "GET reviews:9080/" + "x" * 400 + " -> ratings"
    finding = Finding(FindingKind.SLOWER, label, "slower", 0.001, 1.5, (1.2, 1.9))
    row = finding.verdict()
    assert len(row.metric) == 200 and row.metric.startswith("traces/slower:GET reviews")
    assert Finding.from_verdict(row) == finding
