"""Round trips of the JSON codec: every model type, non-finite floats, tag-like user keys, strict JSON."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from analyzer.evidence import CustomEvidence, EdgeEvidence, Evidence
from analyzer.model import (
    ActionResult,
    CustomValue,
    Decision,
    DecisionKind,
    Event,
    HeaderMatch,
    MetricVerdict,
    Notify,
    Observation,
    Phase,
    RolloutState,
    Scale,
    SetHeaderRoute,
    SetWeights,
    SubsetCounts,
    Verdict,
)
from analyzer.stats.rate_ratio import RatioEvidence
from analyzer.stats.srm import SrmEvidence
from analyzer.store import codec

names = st.text(min_size=1, max_size=12)
any_float = st.floats(allow_nan=True, allow_infinity=True)
finite = st.floats(allow_nan=False, allow_infinity=False)
maybe_float = st.none() | finite | st.sampled_from([math.inf, -math.inf])
counts = st.integers(0, 10**12)

# Aware datetimes in any fixed offset (they come back in UTC, equal as instants) or naive ones.
offsets = st.builds(lambda m: timezone(timedelta(minutes=m)), st.integers(-14 * 60, 14 * 60))
aware = st.datetimes(datetime(1971, 1, 1), datetime(2200, 1, 1), timezones=offsets)
naive = st.datetimes(datetime(1971, 1, 1), datetime(2200, 1, 1))
moments = aware | naive

# Arbitrary JSON-able data, including keys that look like the codec's own tags.
keys = st.text(max_size=8) | st.sampled_from(["$float", "$dict"])
json_data = st.recursive(
    st.none() | st.booleans() | st.integers() | finite | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
    max_leaves=20,
)
json_data_nonfinite = st.recursive(
    st.none() | st.booleans() | st.integers() | any_float | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
    max_leaves=20,
)


def weights_100() -> st.SearchStrategy[dict[str, int]]:
    return st.integers(0, 100).map(lambda w: {"v1": 100 - w, "v2": w})


subset_counts = st.builds(SubsetCounts, counts, counts, st.lists(counts, max_size=20).map(tuple))
header_match = st.builds(HeaderMatch, names, names, st.sampled_from(["exact", "prefix", "regex"]))
actions = st.one_of(
    st.builds(SetWeights, weights_100()),
    st.builds(SetHeaderRoute, st.none() | header_match, st.none() | names),
    st.builds(Scale, names, st.integers(0, 1000)),
    st.builds(Notify, st.sampled_from(Event), st.text(max_size=40)),
)
observations = st.builds(
    Observation,
    start=moments,
    end=moments,
    baseline=st.none() | subset_counts,
    canary=st.none() | subset_counts,
    edges=st.lists(st.floats(0, 1e7) | st.integers(0, 10**7), max_size=20).map(tuple),
    custom=st.dictionaries(names, st.builds(CustomValue, maybe_float, maybe_float), max_size=3),
    stale_series=st.lists(names, max_size=3).map(tuple),
    header_requests=st.none() | counts,
)
metric_verdicts = st.builds(
    MetricVerdict,
    metric=names,
    verdict=st.sampled_from(Verdict),
    reason=st.text(max_size=40),
    gate=st.booleans(),
    e_value=maybe_float,
    threshold=maybe_float,
    promotion_e_value=maybe_float,
    ratio=maybe_float,
    ci=st.none() | st.tuples(maybe_float, maybe_float),
    canary=st.dictionaries(names, finite, max_size=3),
    baseline=st.dictionaries(names, finite, max_size=3),
    details=st.dictionaries(st.text(max_size=8), json_data, max_size=4),
)
interval_counts = st.tuples(counts, counts, counts, counts).map(lambda t: (t[0] + t[1], t[1], t[2] + t[3], t[3]))


@st.composite
def evidences(draw: st.DrawFn) -> Evidence:
    ratio = RatioEvidence(1.5)
    for n_c, e_c, n_b, e_b in draw(st.lists(interval_counts, max_size=3)):
        ratio = ratio.update(n_c, e_c, n_b, e_b)
    hist = draw(st.lists(counts, max_size=4).map(tuple))
    kayenta = draw(st.none() | st.dictionaries(names, st.lists(st.tuples(finite, finite), max_size=3).map(tuple),
                                                max_size=2))
    return Evidence({"errors": ratio, "latency": EdgeEvidence({"250": ratio}, hist, hist),
                     "custom": CustomEvidence(draw(st.integers(0, 9)))}, SrmEvidence().update(5, 95, 0.05), kayenta)


states = st.builds(
    RolloutState,
    rollout=names,
    phase=st.sampled_from(Phase),
    step=st.integers(-1, 20),
    tick=st.integers(0, 10**6),
    started_at=st.none() | moments,
    step_started_at=st.none() | moments,
    step_ticks=st.integers(0, 1000),
    step_ticks_all=st.integers(0, 1000),
    weights=weights_100(),
    header_route=st.booleans(),
    evidence=st.none() | evidences(),
    reason=st.text(max_size=40),
    decided_at=st.none() | moments,
    paused_from=st.none() | st.sampled_from(Phase),
    failures=st.integers(0, 10),
)


def strict_round_trip(data: object) -> object:
    """What a JSON column gives back: the strict text parsed again."""
    return json.loads(codec.dumps(data))


@given(states)
def test_state_round_trip(state: RolloutState) -> None:
    assert codec.decode_state(strict_round_trip(codec.encode_state(state))) == state


@given(observations)
def test_observation_round_trip(obs: Observation) -> None:
    assert codec.decode_observation(strict_round_trip(codec.encode_observation(obs))) == obs


@given(metric_verdicts)
def test_verdict_round_trip(v: MetricVerdict) -> None:
    assert codec.decode_verdict(strict_round_trip(codec.encode_verdict(v))) == v


@given(st.builds(Decision, st.sampled_from(DecisionKind), st.text(max_size=40),
               st.lists(actions, max_size=5).map(tuple)))
def test_decision_round_trip(d: Decision) -> None:
    assert codec.decode_decision(strict_round_trip(codec.encode_decision(d))) == d


@given(st.builds(ActionResult, actions, st.booleans(), st.none() | st.text(max_size=40)))
def test_action_result_round_trip(r: ActionResult) -> None:
    assert codec.decode_result(strict_round_trip(codec.encode_result(r))) == r


@given(json_data_nonfinite)
def test_arbitrary_data_with_nan_and_inf_is_strict_json_and_round_trips(data: object) -> None:
    text = codec.dumps(codec.encode_value(data))  # raises on a bare NaN/Infinity
    back = codec.decode_value(json.loads(text))
    # NaN != NaN, so compare the canonical encodings instead of the values.
    assert codec.dumps(codec.encode_value(back)) == text


@pytest.mark.parametrize("x", [math.inf, -math.inf])
def test_infinite_verdict_fields_survive(x: float) -> None:
    v = MetricVerdict("errors", Verdict.FAIL, "r", e_value=x, ci=(0.5, x), canary={"rate": x})
    back = codec.decode_verdict(strict_round_trip(codec.encode_verdict(v)))
    assert back == v


def test_nan_verdict_fields_survive() -> None:
    v = MetricVerdict("errors", Verdict.NO_DATA, "r", ratio=math.nan, ci=(math.nan, 2.0))
    back = codec.decode_verdict(strict_round_trip(codec.encode_verdict(v)))
    assert back.ratio is not None and math.isnan(back.ratio)
    assert back.ci is not None and math.isnan(back.ci[0]) and back.ci[1] == 2.0


def test_example_state_encodes_readably() -> None:
    t = datetime(2024, 5, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    state = RolloutState(
        rollout="r1", phase=Phase.PROGRESSING, step=1, weights={"v1": 75, "v2": 25}, started_at=t,
        evidence=Evidence({"errors": RatioEvidence(1.5, x=3, pen=(0.1, math.inf))}),
    )
    data = codec.encode_state(state)
    assert data["phase"] == "Progressing"
    assert data["started_at"] == "2024-05-01T10:00:00+00:00"  # UTC
    assert data["evidence"]["format"] == 2
    assert data["evidence"]["metrics"]["errors"]["pen"] == [0.1, {"$float": "inf"}]
    back = codec.decode_state(data)
    assert back == state and back.started_at is not None and back.started_at.tzinfo == UTC


def test_naive_datetimes_stay_naive() -> None:
    t = datetime(2024, 5, 1, 12, 0)
    back = codec.decode_state(codec.encode_state(RolloutState("r", decided_at=t)))
    assert back.decided_at == t and back.decided_at.tzinfo is None


def test_user_keys_that_look_like_tags_are_escaped() -> None:
    data = {"$float": "inf", "nested": {"$dict": {"$float": "nan"}}}
    encoded = codec.encode_value(data)
    assert codec.decode_value(strict_round_trip(encoded)) == data


def test_state_from_an_older_row_takes_defaults() -> None:
    back = codec.decode_state({"rollout": "r", "phase": "Progressing", "step": 2, "unknown_later_field": 1})
    assert back == RolloutState("r", phase=Phase.PROGRESSING, step=2)


def test_evidence_from_an_older_row_loads() -> None:
    """Rows written before the evidence was typed: one dict keyed by metric name, SRM and Kayenta inside."""
    ratio = RatioEvidence(1.5).update(100, 3, 900, 10)
    old = {
        "traffic-split": {"log_done": 0.0, "share": 0.1, "x": 10, "m": 100},
        "kayenta": {"p99": [[1.0, 2.0]]},
        "errors": ratio.to_json(),
        "latency": {"250": ratio.to_json(), "hist_canary": [1, 2], "hist_baseline": [3, 4]},
        "slo": {"failures": 2},
    }
    back = codec.decode_state({"rollout": "r", "phase": "Progressing", "evidence": old})
    assert back.evidence == Evidence(
        {"errors": ratio, "latency": EdgeEvidence({"250": ratio}, (1, 2), (3, 4)), "slo": CustomEvidence(2)},
        SrmEvidence(0.0, 0.1, 10, 100), {"p99": ((1.0, 2.0),)})


def test_tuples_in_arbitrary_data_come_back_as_lists() -> None:
    assert codec.decode_value(codec.encode_value({"a": (1, 2)})) == {"a": [1, 2]}


@pytest.mark.parametrize("bad", [{"a": {1, 2}}, {"a": object()}, {1: "x"}, {"t": datetime.now(UTC)}])
def test_non_json_data_is_rejected(bad: object) -> None:
    with pytest.raises(TypeError):
        codec.encode_value(bad)


def test_unknown_action_is_rejected_both_ways() -> None:
    with pytest.raises(TypeError, match="not an action"):
        codec.encode_action("set weights")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown action type 'reboot'"):
        codec.decode_action({"type": "reboot"})


def test_action_tags() -> None:
    weights = {"v1": 90, "v2": 10}
    assert codec.encode_action(SetWeights(weights)) == {"type": "set_weights", "weights": weights}
    assert codec.encode_action(SetHeaderRoute(None)) == {"type": "set_header_route", "match": None, "subset": None}


def test_evidence_vectors_are_stored_packed_and_come_back_bit_for_bit() -> None:
    ratio = RatioEvidence(1.5)
    for k in range(40):  # 40 intervals: a pair per interval, and penalties with -inf where the grid rules out
        ratio = ratio.update(1000 + k, 3 + k % 4, 9000, 20)
    state = RolloutState("r", phase=Phase.PROGRESSING, evidence=Evidence({"errors": ratio}))
    data = strict_round_trip(codec.encode_state(state))
    stored = data["evidence"]["metrics"]["errors"]
    assert set(stored["pen"]) == {"$f64"} and set(stored["exposure"]) == {"$i64x2"}
    back = codec.decode_state(data)
    assert back == state
    for name in ("pen", "tpen", "tau_ll"):  # the same bits, not merely equal numbers
        assert getattr(back.evidence.metrics["errors"], name)._data == getattr(ratio, name)._data


def test_packing_keeps_non_finite_values_and_leaves_other_data_readable() -> None:
    vector = [0.0, -0.0, math.inf, -math.inf, math.nan, 1e-310, 1.7976931348623157e308] * 3
    packed = strict_round_trip(codec.encode_value({"v": vector, "short": [1.5, 2.5]}, pack=True))
    assert packed["short"] == [1.5, 2.5] and set(packed["v"]) == {"$f64"}
    back = codec.decode_value(packed)["v"]
    assert [math.copysign(1, x) if x == 0 else x for x in back if not math.isnan(x)] == \
        [math.copysign(1, x) if x == 0 else x for x in vector if not math.isnan(x)]
    assert sum(math.isnan(x) for x in back) == 3
    assert set(strict_round_trip(codec.encode_value({"v": vector}))["v"][2]) == {"$float"}  # unpacked elsewhere


def test_user_keys_that_look_like_packed_vectors_are_escaped() -> None:
    data = {"a": {"$f64": "AAAAAAAA8D8="}, "b": {"$i64x2": "x"}}
    assert codec.decode_value(strict_round_trip(codec.encode_value(data, pack=True))) == data
