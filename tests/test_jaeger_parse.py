"""Parsing the real Jaeger/Tempo fixtures in shared/fixtures/jaeger (values read from the files)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from analyzer.model import Span
from analyzer.sources.jaeger.parse import (
    SubsetSelector,
    dedupe,
    json_documents,
    normalize_id,
    parse_node_id,
    parse_otlp,
    parse_upstream_cluster,
    parse_v1_envelope,
    parse_v1_trace,
    workload_of_pod,
)
from analyzer.traces import spans_frame
from tests.conftest import require_or_skip

_CANDIDATES = (
    Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "jaeger",  # CI: shared/ beside the clone
    Path("/work/shared/fixtures/jaeger"),
)


def _fixture(name: str) -> Any:
    for folder in _CANDIDATES:
        if (folder / name).is_file():
            return json.loads((folder / name).read_text())
    require_or_skip(False, f"fixture {name} not found in {', '.join(map(str, _CANDIDATES))}")


BOOKINFO = SubsetSelector(app="reviews", host="reviews.bookinfo.svc.cluster.local", by_label={"v1": "v1", "v2": "v2"})


def test_v1_envelope_parses_and_drops_the_repeated_span() -> None:
    spans = parse_v1_envelope(_fixture("jaeger-v1-api-traces-envelope.otlp2jaeger-out.json"))
    assert len(spans) == 2  # the fixture repeats the span
    (span,) = dedupe(spans)
    assert span.trace_id == "83a9efd15c1c98a977e0711cc93ee28b"
    assert span.span_id == "e127af99e3b3e074"
    assert span.parent_id == "909541b92cf05311"
    assert span.service == "telemetrygen"
    assert span.operation == "okey-dokey-0"
    assert span.kind == "server"  # from the span.kind tag
    assert (span.start_us, span.duration_us) == (1706678909209712, 123)
    assert span.error is False and span.http_status is None
    assert span.attributes["peer.service"] == "telemetrygen-client"
    assert span.attributes["otel.scope.name"] == "telemetrygen"


def test_v1_ui_trace_every_tag_type_and_reference_kind() -> None:
    spans = parse_v1_trace(_fixture("jaeger-v1-ui-trace.ui_01.json"))
    assert [s.operation for s in spans] == [
        "test-general-conversion", "some-operation", "some-operation", "reference-test", "preserveParentID-test"]
    assert [s.service for s in spans] == ["service-x", "service-x", "service-y", "service-y", "service-y"]
    tagged = spans[1]
    assert tagged.attributes["peer.ipv4"] == 23456
    assert tagged.attributes["temperature"] == 72.5
    assert tagged.attributes["javascript_limit"] == 9223372036854775222  # int64 sent as a JSON string
    assert tagged.attributes["blob"] == bytes.fromhex("00003039")  # binary is base64 "AAAwOQ=="
    assert tagged.attributes["error"] is True and tagged.error is True
    assert spans[0].error is False and spans[0].kind == "unspecified"
    assert spans[0].parent_id is None
    assert spans[2].parent_id == "0000000000000002"
    # The first CHILD_OF points into another trace (00ff); the parent is the same-trace one.
    assert spans[3].parent_id == "0000000000000002"
    assert spans[4].parent_id == "0000000000000004" and spans[4].duration_us == 4
    assert {s.trace_id for s in spans} == {"0000000000000001"}


def test_api_v3_snapshot_numeric_enums_and_hex_ids() -> None:
    (span,) = parse_otlp(_fixture("jaeger-api-v3-get-trace.snapshot.json"))
    assert span.trace_id == "00000000000000000000000000000001"
    assert span.span_id == "0000000000000002"
    assert span.operation == "foobar"
    assert span.kind == "server"  # kind 2
    assert span.error is True  # status.code 2
    assert span.parent_id is None and span.service == ""


def test_tempo_bookinfo_trace_base64_ids_string_enums_and_istio_tags() -> None:
    spans = parse_otlp(_fixture("kiali-tempo-istio-bookinfo-trace.responseTrace.json"))
    assert len(spans) == 8
    assert {s.trace_id for s in spans} == {"3ba55609c3cde49649cd77d1f9dcd936"}
    reviews = next(s for s in spans if s.span_id == "77191048cb7dadc4")
    assert reviews.service == "reviews.bookinfo"
    assert reviews.kind == "server"  # "SPAN_KIND_SERVER"
    assert reviews.operation == "reviews.bookinfo.svc.cluster.local:9080/*"
    assert reviews.parent_id == "1210042c36f8be92"
    assert reviews.start_us == 1701779876578458 and reviews.duration_us == 2242
    assert reviews.http_status == 200 and reviews.error is False
    assert reviews.attributes["istio.canonical_revision"] == "v2"
    assert reviews.attributes["service.name"] == "reviews.bookinfo"  # resource attributes are kept
    kinds = sorted(s.kind for s in spans)
    assert kinds == ["client"] * 4 + ["server"] * 4


def test_bookinfo_subsets_by_revision_node_id_and_upstream_cluster() -> None:
    spans = BOOKINFO.assign(parse_otlp(_fixture("kiali-tempo-istio-bookinfo-trace.responseTrace.json")))
    by_id = {s.span_id: s for s in spans}
    assert by_id["77191048cb7dadc4"].subset == "v2"  # reviews server span
    assert by_id["7c597bf56ddf1a03"].subset == "v2"  # reviews -> ratings client span, same pod
    # productpage -> reviews: upstream_cluster has no subset (no DestinationRule subsets in this trace)
    assert by_id["1210042c36f8be92"].subset is None
    assert {s.subset for s in spans if s.service != "reviews.bookinfo"} == {None}

    # Host-based canary: revision "latest", the pod name tells the workload reviews-v2.
    latest = replace(by_id["77191048cb7dadc4"],
                     attributes={**by_id["77191048cb7dadc4"].attributes, "istio.canonical_revision": "latest"})
    assert BOOKINFO.subset_of(latest) == "v2"
    # Subset routing: the caller's client span names the subset in its cluster.
    caller = by_id["1210042c36f8be92"]

    def routed(subset: str) -> Span:
        cluster = f"outbound|9080|{subset}|reviews.bookinfo.svc.cluster.local"
        return replace(caller, attributes={**caller.attributes, "upstream_cluster": cluster})

    assert BOOKINFO.subset_of(routed("v2")) == "v2"
    assert BOOKINFO.subset_of(routed("v3")) is None
    renamed = SubsetSelector(app="reviews", host=BOOKINFO.host, by_label={"v1": "stable", "v2": "canary"})
    assert renamed.subset_of(routed("canary")) == "canary"  # the DestinationRule subset name
    assert renamed.subset_of(routed("v2")) == "canary"  # or a subset named after its version label
    assert renamed.subset_of(by_id["77191048cb7dadc4"]) == "canary"


def test_small_parsers() -> None:
    assert parse_upstream_cluster("outbound|9080|v2|reviews.bookinfo.svc.cluster.local") == (
        "outbound", "9080", "v2", "reviews.bookinfo.svc.cluster.local")
    assert parse_upstream_cluster("inbound|9080||") == ("inbound", "9080", "", "")
    assert parse_upstream_cluster("-") is None
    assert parse_node_id(
        "sidecar~10.244.0.23~reviews-v2-6f76498fc8-58wpn.bookinfo~bookinfo.svc.cluster.local"
    ) == ("sidecar", "reviews-v2-6f76498fc8-58wpn", "bookinfo")
    assert workload_of_pod("reviews-v2-6f76498fc8-58wpn") == "reviews-v2"
    assert workload_of_pod("mysql-0") == "mysql"
    assert normalize_id("Sc130fnc2TY=") == "49cd77d1f9dcd936"
    assert normalize_id("ABCDEF0123456789") == "abcdef0123456789"
    assert [d["a"] for d in json_documents('{"a": 1}\n{"a": 2} ')] == [1, 2]


def test_spans_frame_one_row_per_span() -> None:
    spans = BOOKINFO.assign(parse_otlp(_fixture("kiali-tempo-istio-bookinfo-trace.responseTrace.json")))
    frame = spans_frame(spans)
    assert list(frame.columns) == ["trace", "span", "parent", "service", "operation", "kind", "start",
                                   "duration_us", "error", "http_status", "subset", "attributes"]
    assert len(frame) == 8
    row = frame.set_index("span").loc["77191048cb7dadc4"]
    assert row["start"] == pd.Timestamp("2023-12-05T12:37:56.578458Z")
    assert row["duration_us"] == 2242 and row["http_status"] == 200 and row["subset"] == "v2"
    assert row["attributes"]["node_id"].startswith("sidecar~10.244.0.23~reviews-v2")
    assert frame["http_status"].dtype == "Int64"


@pytest.mark.parametrize("kind", [3, "3", "SPAN_KIND_CLIENT", "client"])
def test_kind_enums_all_spellings(kind: object) -> None:
    body = {"resourceSpans": [{"resource": {}, "scopeSpans": [{"spans": [
        {"traceId": "0" * 31 + "1", "spanId": "0" * 15 + "2", "name": "x", "kind": kind,
         "attributes": [{"key": "n", "value": {"intValue": "7"}}]}]}]}]}
    (span,) = parse_otlp(body)
    assert span.kind == "client" and span.attributes["n"] == 7
