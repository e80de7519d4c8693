"""JSON (de)serialisation of the model types, for the store's JSON columns and for exports.

The encoded form is strict JSON (no NaN/Infinity literals, which PostgreSQL rejects):
non-finite floats become {"$float": "inf" | "-inf" | "nan"}. Datetimes are ISO-8601; aware ones
are converted to UTC, naive ones stay naive so a state round-trips exactly. Tuples inside
arbitrary data (`evidence`, `details`) come back as lists, as with any JSON.

A rollout state's evidence holds vectors of a few hundred floats per e-process (and one request pair per
interval) and is written every tick: there, vectors of `PACK_MIN` or more numbers are stored as base64 of
their little-endian bytes, {"$f64": ...} or {"$i64x2": ...}, the same bits at a fraction of the cost.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Mapping
from dataclasses import fields
from datetime import UTC, datetime
from enum import Enum
from functools import cache
from typing import Any, get_args, get_type_hints

import numpy as np

from analyzer.evidence import Evidence
from analyzer.model import (
    Action,
    ActionResult,
    CustomValue,
    DataGap,
    Decision,
    DecisionKind,
    Event,
    HeaderMatch,
    MetricVerdict,
    Notify,
    Observation,
    RestoreRoute,
    Resume,
    RolloutState,
    Scale,
    SetHeaderRoute,
    SetWeights,
    SubsetCounts,
    Verdict,
)

JSON = Any  # a value made of dict/list/str/int/float/bool/None only

_FLOAT_TAG = "$float"
_DICT_TAG = "$dict"  # escapes user dicts that would otherwise read as a tag
_F64_TAG = "$f64"  # packed float64 vector (evidence only)
_PAIRS_TAG = "$i64x2"  # packed int64 pairs (evidence only)
_TAGS = (_FLOAT_TAG, _DICT_TAG, _F64_TAG, _PAIRS_TAG)
_NON_FINITE = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}
PACK_MIN = 16  # shorter vectors stay readable


def dumps(data: JSON) -> str:
    """Strict JSON text: raises ValueError on NaN/Infinity that escaped encoding."""
    return json.dumps(data, allow_nan=False, separators=(",", ":"), ensure_ascii=False)


def loads(text: str) -> JSON:
    return json.loads(text)


# ---- scalars ----


def encode_float(x: float | None) -> JSON:
    if x is None or math.isfinite(x):
        return x
    return {_FLOAT_TAG: "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")}


def decode_float(v: JSON) -> float | None:
    if isinstance(v, dict):
        return _NON_FINITE[v[_FLOAT_TAG]]
    return v


def encode_datetime(t: datetime | None) -> str | None:
    if t is None:
        return None
    return (t.astimezone(UTC) if t.tzinfo is not None else t).isoformat()


def decode_datetime(v: str | None) -> datetime | None:
    return None if v is None else datetime.fromisoformat(v)


# ---- arbitrary JSON-able data ----


def encode_value(value: Any, *, pack: bool = False) -> JSON:
    """Arbitrary JSON-able data -> strict JSON. Raises TypeError on anything else.

    `pack`: numeric vectors of `PACK_MIN` or more values become base64 of their bytes (see the module doc).
    """
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return encode_float(value)
    if isinstance(value, Mapping):
        out: dict[str, JSON] = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"mapping key {k!r} is not a string")
            out[k] = encode_value(v, pack=pack)
        return {_DICT_TAG: out} if len(out) == 1 and next(iter(out)) in _TAGS else out
    if isinstance(value, list | tuple):
        # Fast paths for the long numeric arrays of evidence state (the daemon encodes them every tick).
        kinds = set(map(type, value))
        if kinds == {float} and pack and len(value) >= PACK_MIN:
            return {_F64_TAG: base64.b64encode(np.asarray(value, dtype="<f8").tobytes()).decode("ascii")}
        if kinds == {float} and math.isfinite(sum(value)):  # no -inf or NaN among them (overflow: the slow path)
            return list(value)
        if kinds <= {int, float}:
            return [v if type(v) is int or math.isfinite(v) else encode_float(v) for v in value]
        if kinds == {list} and all(len(v) == 2 and type(v[0]) is int and type(v[1]) is int for v in value):
            if pack and len(value) >= PACK_MIN:  # per-interval count pairs
                return {_PAIRS_TAG: base64.b64encode(np.asarray(value, dtype="<i8").tobytes()).decode("ascii")}
            return [list(v) for v in value]
        return [encode_value(v, pack=pack) for v in value]
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable: {value!r}")


def decode_value(data: JSON) -> Any:
    if isinstance(data, list):
        return [decode_value(v) for v in data]
    if isinstance(data, dict):
        if len(data) == 1:
            if _FLOAT_TAG in data:
                return decode_float(data)
            if _DICT_TAG in data:
                return {k: decode_value(v) for k, v in data[_DICT_TAG].items()}
            if _F64_TAG in data:
                return np.frombuffer(base64.b64decode(data[_F64_TAG]), dtype="<f8").tolist()
            if _PAIRS_TAG in data:
                return np.frombuffer(base64.b64decode(data[_PAIRS_TAG]), dtype="<i8").reshape(-1, 2).tolist()
        return {k: decode_value(v) for k, v in data.items()}
    return data


def _floats(m: Mapping[str, float]) -> dict[str, JSON]:
    return {k: encode_float(v) for k, v in m.items()}


def _unfloats(d: Mapping[str, JSON]) -> dict[str, float]:
    return {k: decode_float(v) for k, v in d.items()}  # type: ignore[misc]


# ---- observation ----


def encode_counts(c: SubsetCounts | None) -> JSON:
    if c is None:
        return None
    return {"requests": c.requests, "errors": c.errors, "latency_le": list(c.latency_le)}


def decode_counts(d: JSON) -> SubsetCounts | None:
    if d is None:
        return None
    return SubsetCounts(d["requests"], d["errors"], tuple(d.get("latency_le", ())))


def encode_observation(o: Observation) -> JSON:
    return {
        "start": encode_datetime(o.start),
        "end": encode_datetime(o.end),
        "baseline": encode_counts(o.baseline),
        "canary": encode_counts(o.canary),
        "edges": [encode_float(e) for e in o.edges],
        "custom": {
            k: {"baseline": encode_float(v.baseline), "canary": encode_float(v.canary)} for k, v in o.custom.items()
        },
        "stale_series": list(o.stale_series),
        "header_requests": o.header_requests,
        "gap": None if o.gap is None else {"subset": o.gap.subset, "why": o.gap.why, "resume": o.gap.resume.value,
                                           "unreadable": o.gap.unreadable},
    }


def decode_observation(d: JSON) -> Observation:
    return Observation(
        start=datetime.fromisoformat(d["start"]),
        end=datetime.fromisoformat(d["end"]),
        baseline=decode_counts(d["baseline"]),
        canary=decode_counts(d["canary"]),
        edges=tuple(decode_float(e) for e in d["edges"]),  # type: ignore[misc]
        custom={
            k: CustomValue(decode_float(v["baseline"]), decode_float(v["canary"]))
            for k, v in d.get("custom", {}).items()
        },
        stale_series=tuple(d.get("stale_series", ())),
        header_requests=d.get("header_requests"),
        gap=None if d.get("gap") is None else DataGap(d["gap"]["subset"], d["gap"]["why"], Resume(d["gap"]["resume"]),
                                                      bool(d["gap"].get("unreadable", False))),
    )


# ---- verdicts ----


def encode_verdict(v: MetricVerdict) -> JSON:
    return {
        "metric": v.metric,
        "verdict": v.verdict.value,
        "reason": v.reason,
        "gate": v.gate,
        "e_value": encode_float(v.e_value),
        "threshold": encode_float(v.threshold),
        "promotion_e_value": encode_float(v.promotion_e_value),
        "ratio": encode_float(v.ratio),
        "ci": None if v.ci is None else [encode_float(v.ci[0]), encode_float(v.ci[1])],
        "canary": _floats(v.canary),
        "baseline": _floats(v.baseline),
        "details": encode_value(v.details),
    }


def decode_verdict(d: JSON) -> MetricVerdict:
    ci = d.get("ci")
    return MetricVerdict(
        metric=d["metric"],
        verdict=Verdict(d["verdict"]),
        reason=d["reason"],
        gate=d.get("gate", True),
        e_value=decode_float(d.get("e_value")),
        threshold=decode_float(d.get("threshold")),
        promotion_e_value=decode_float(d.get("promotion_e_value")),
        ratio=decode_float(d.get("ratio")),
        ci=None if ci is None else (decode_float(ci[0]), decode_float(ci[1])),  # type: ignore[arg-type]
        canary=_unfloats(d.get("canary", {})),
        baseline=_unfloats(d.get("baseline", {})),
        details=decode_value(d.get("details", {})),
    )


# ---- actions and decisions: a tagged union by "type" ----


def encode_action(a: Action) -> JSON:
    match a:
        case SetWeights(weights=w):
            return {"type": "set_weights", "weights": dict(w)}
        case SetHeaderRoute(match=m, subset=s):
            match_json = None if m is None else {"header": m.header, "value": m.value, "kind": m.kind}
            return {"type": "set_header_route", "match": match_json, "subset": s}
        case Scale(subset=s, replicas=r):
            return {"type": "scale", "subset": s, "replicas": r}
        case Notify(event=e, message=msg):
            return {"type": "notify", "event": str(e), "message": msg}
        case RestoreRoute():
            return {"type": "restore_route"}
    raise TypeError(f"not an action: {a!r}")


def decode_action(d: JSON) -> Action:
    kind = d.get("type")
    if kind == "set_weights":
        return SetWeights(weights=dict(d["weights"]))
    if kind == "set_header_route":
        m = d.get("match")
        return SetHeaderRoute(match=None if m is None else HeaderMatch(**m), subset=d.get("subset"))
    if kind == "scale":
        return Scale(subset=d["subset"], replicas=d["replicas"])
    if kind == "notify":
        return Notify(event=Event(d["event"]), message=d["message"])
    if kind == "restore_route":
        return RestoreRoute()
    raise ValueError(f"unknown action type {kind!r}")


def encode_decision(dec: Decision) -> JSON:
    return {"kind": str(dec.kind), "reason": dec.reason, "actions": [encode_action(a) for a in dec.actions]}


def decode_decision(d: JSON) -> Decision:
    actions = tuple(decode_action(a) for a in d.get("actions", ()))
    return Decision(kind=DecisionKind(d["kind"]), reason=d["reason"], actions=actions)


def encode_result(r: ActionResult) -> JSON:
    return {"action": encode_action(r.action), "ok": r.ok, "error": r.error}


def decode_result(d: JSON) -> ActionResult:
    return ActionResult(action=decode_action(d["action"]), ok=d["ok"], error=d.get("error"))


# ---- rollout state ----
# Field by field from the dataclass, so a field added to RolloutState is stored without a codec change.


def encode_evidence(e: Evidence) -> JSON:
    return encode_value(e.to_json(), pack=True)


def encode_state(s: RolloutState) -> JSON:
    return {f.name: _encode_field(getattr(s, f.name)) for f in fields(RolloutState)}


def decode_state(d: JSON) -> RolloutState:
    """Missing keys take the model's defaults and unknown keys are ignored, so old rows still load."""
    hints = _state_hints()
    kwargs = {f.name: _decode_field(hints[f.name], d[f.name]) for f in fields(RolloutState) if f.name in d}
    return RolloutState(**kwargs)


def _encode_field(value: Any) -> JSON:
    if isinstance(value, Evidence):
        return encode_evidence(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime):
        return encode_datetime(value)
    return encode_value(value)


def _decode_field(hint: Any, value: JSON) -> Any:
    if value is None:
        return None
    types = get_args(hint) or (hint,)  # X | None -> (X, NoneType)
    for t in types:
        if t is Evidence:
            return Evidence.from_json(decode_value(value)) if value else None
        if t is datetime:
            return datetime.fromisoformat(value)
        if isinstance(t, type) and issubclass(t, Enum):
            return t(value)
    return decode_value(value)


@cache
def _state_hints() -> dict[str, Any]:
    return get_type_hints(RolloutState)
