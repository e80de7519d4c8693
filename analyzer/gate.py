"""The gate: one tick's per-metric verdicts -> one outcome and why. Pure.

The policy (daemon, `run`, `demo`) and `replay` (the `judge` command, backtests) both call this, so the
CI gate and the daemon cannot disagree about what a set of verdicts means.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from analyzer.config import RolloutSpec
from analyzer.model import MetricVerdict, Verdict


class GateKind(StrEnum):
    FAIL = "fail"  # a gate metric proved a regression: roll back
    HALT = "halt"  # the comparison is invalid (traffic split, shared outage): pause, blame no one
    HOLD = "hold"  # a gate metric has no data: the interval does not count
    PASS = "pass"  # every gate metric has promotion evidence
    CONTINUE = "continue"  # nothing proven either way yet


@dataclass(frozen=True)
class GateOutcome:
    kind: GateKind
    reason: str
    deciding: tuple[MetricVerdict, ...]  # the verdicts the outcome rests on


def gate_outcome(verdicts: Sequence[MetricVerdict]) -> GateOutcome:
    # Halts first: a shared outage or a broken split makes this tick's comparison meaningless, so it cannot
    # blame the canary in the same tick (issue 9 §2).
    gates = tuple(v for v in verdicts if v.gate)
    for kind, verdict in ((GateKind.HALT, Verdict.HALT), (GateKind.FAIL, Verdict.FAIL),
                          (GateKind.HOLD, Verdict.NO_DATA)):
        hit = tuple(v for v in gates if v.verdict is verdict)
        if hit:
            return GateOutcome(kind, "; ".join(v.reason for v in hit), hit)
    kind = GateKind.PASS if gates and all(v.verdict is Verdict.PASS for v in gates) else GateKind.CONTINUE
    return GateOutcome(kind, "; ".join(v.reason for v in gates), gates)


def dwell_done(spec: RolloutSpec, intervals_with_data: int) -> bool:
    """A step may end (advance or promote) once it has this many intervals with data."""
    return intervals_with_data >= spec.timing.min_dwell
