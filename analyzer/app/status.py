"""A rollout's status as JSON: the API's body, with the field names of `history show --json`."""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any

from analyzer.app.simulation import verdict_json
from analyzer.store.status import RolloutStatus


def _finite(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else x


def status_json(s: RolloutStatus) -> dict[str, Any]:
    summary = asdict(s.summary)
    verdicts = []
    for v in s.final_verdicts:
        out = verdict_json(v)
        out["ci"] = None if v.ci is None else [_finite(v.ci[0]), _finite(v.ci[1])]
        verdicts.append(out)
    return {
        **summary,
        "decision_minutes": _finite(summary["decision_minutes"]),
        "virtual_service": (s.spec.get("target") or {}).get("virtualService"),
        "updated_at": s.updated_at,
        "tick": s.tick,
        "step": s.step,
        "weights": dict(s.weights),
        "header_route": s.header_route,
        "decision": s.decision,
        "reason": s.reason,
        "final_verdicts": verdicts,
        "final_verdicts_tick": s.final_verdicts_tick,
    }
