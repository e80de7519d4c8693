"""Value types shared by every layer: observations, verdicts, actions, rollout state.

Everything here is immutable and free of I/O so the core (judge, policy) stays pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from analyzer.evidence import Evidence

# Envoy's default histogram buckets in ms (formats.md §1.3); +Inf is implied.
ISTIO_DEFAULT_EDGES_MS: tuple[float, ...] = (
    0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000,
    300000, 600000, 1800000, 3600000,
)


class Phase(StrEnum):
    PENDING = "Pending"
    INITIALIZING = "Initializing"
    HEADER_TESTING = "HeaderTesting"
    PROGRESSING = "Progressing"
    PROMOTING = "Promoting"
    SUCCEEDED = "Succeeded"
    ROLLING_BACK = "RollingBack"
    ROLLED_BACK = "RolledBack"
    PAUSED = "Paused"
    INCONCLUSIVE = "Inconclusive"
    FAILED = "Failed"
    ABORTED = "Aborted"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_PHASES


TERMINAL_PHASES = frozenset(
    {Phase.SUCCEEDED, Phase.ROLLED_BACK, Phase.INCONCLUSIVE, Phase.PAUSED, Phase.FAILED, Phase.ABORTED}
)

# Outcome names used by the CLI, the store and the benchmarks.
OUTCOME_BY_PHASE: Mapping[Phase, str] = {
    Phase.SUCCEEDED: "promoted",
    Phase.ROLLED_BACK: "rolled_back",
    Phase.INCONCLUSIVE: "inconclusive",
    Phase.PAUSED: "paused",
    Phase.FAILED: "failed",
    Phase.ABORTED: "aborted",
}


class DecisionKind(StrEnum):
    """What the policy chose in one tick; the store, the JSON output and the API use the values."""

    START = "start"
    HOLD = "hold"
    CONTINUE = "continue"
    ADVANCE = "advance"
    PROMOTE = "promote"
    ROLLBACK = "rollback"
    PAUSE = "pause"
    RESUME = "resume"
    ABORT = "abort"
    INCONCLUSIVE = "inconclusive"
    FAIL = "fail"
    FINISH = "finish"


class Command(StrEnum):
    """An operator's command to a running rollout."""

    PROMOTE = "promote"
    PAUSE = "pause"
    RESUME = "resume"
    ABORT = "abort"


class Event(StrEnum):
    """What a notification or a recorded event is about."""

    ADVANCED = "advanced"
    PROMOTED = "promoted"
    ROLLBACK = "rollback"
    ABORT = "abort"
    PAUSE = "pause"
    INCONCLUSIVE = "inconclusive"
    FAILED = "failed"
    DRIFT = "drift"
    PHASE = "phase"  # a phase or step change (announced to the notifier, e.g. as a Kubernetes Event)
    SOURCE_UNAVAILABLE = "source-unavailable"
    TRACE_SOURCE_UNAVAILABLE = "trace-source-unavailable"
    NOTIFY_FAILED = "notify-failed"
    LOAD = "load"
    HOOK = "hook"


@dataclass(frozen=True)
class SubsetCounts:
    """Exact integer increments of one subset over one interval.

    `latency_le[j]` is the increment of the cumulative bucket `le=edges[j]`; the last entry is
    `le="+Inf"`, i.e. the number of requests the histogram saw.
    """

    requests: int
    errors: int
    latency_le: tuple[int, ...] = ()

    def slow(self, edge_index: int) -> int:
        """Requests slower than edges[edge_index] (the exceedance count)."""
        return self.latency_le[-1] - self.latency_le[edge_index]

    def __add__(self, other: SubsetCounts) -> SubsetCounts:
        le = tuple(a + b for a, b in zip(self.latency_le, other.latency_le, strict=True)) if (
            self.latency_le and other.latency_le) else (self.latency_le or other.latency_le)
        return SubsetCounts(self.requests + other.requests, self.errors + other.errors, le)


@dataclass(frozen=True)
class Span:
    """One span from a trace source, reduced to what the analysis uses."""

    trace_id: str
    span_id: str
    parent_id: str | None
    service: str
    operation: str
    kind: str  # server | client | internal | producer | consumer | unspecified
    start_us: int
    duration_us: int
    error: bool
    http_status: int | None
    subset: str | None  # baseline/canary subset name, or None when unknown
    attributes: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CustomValue:
    """One value per subset for a templated custom metric; None means no data."""

    baseline: float | None
    canary: float | None


class Resume(StrEnum):
    """Where the next window starts after a gap (statistics.md §5.7, "Per-subset gaps")."""

    START = "start"  # data at this window's end edge is missing: wait for it, keep this window's start
    END = "end"  # this window's data is unusable but its end edge is good: start afresh at its end


@dataclass(frozen=True)
class DataGap:
    """Why an interval cannot feed the evidence. A gap is always a gap for both subsets.

    `subset` names the side that lacked data (baseline, canary or both); `unreadable` is True when
    samples were there but held values no counter can have (NaN, ±Inf, fractions, negatives).
    """

    subset: str
    why: str
    resume: Resume = Resume.START
    unreadable: bool = False


@dataclass(frozen=True)
class Observation:
    """What the metric source saw for one interval [start, end).

    A subset is None when its series are missing (no data); the tick then holds. With `gap` set both
    subsets are None: one side lacked samples at an edge, so no count of either side is comparable.
    """

    start: datetime
    end: datetime
    baseline: SubsetCounts | None
    canary: SubsetCounts | None
    edges: tuple[float, ...] = ISTIO_DEFAULT_EDGES_MS
    custom: Mapping[str, CustomValue] = field(default_factory=dict)
    stale_series: tuple[str, ...] = ()
    # Requests routed by the header match during the interval, when the source can tell.
    header_requests: int | None = None
    # Sampled spans of the interval; None when no trace source is configured or it was unavailable.
    spans: tuple[Span, ...] | None = None
    gap: DataGap | None = None

    @property
    def has_data(self) -> bool:
        return self.gap is None and self.baseline is not None and self.canary is not None


# The longest window a gap may be bridged with; past it the increments inside are given up (for both sides).
MAX_BRIDGE = timedelta(hours=1)


def next_window_start(start: datetime, end: datetime, observation: Observation | None) -> datetime:
    """The last edge both subsets have after observing [start, end): where the next window starts.

    Without an answer (source unavailable), without a subset's series, or with data missing at the end
    edge, the next window starts at `start` again, so both sides' increments keep covering one span.
    """
    if observation is None or (observation.gap is None and not observation.has_data):
        return start
    if observation.gap is not None and observation.gap.resume is Resume.START:
        return start
    return end


class Verdict(StrEnum):
    PASS = "pass"  # promotion evidence reached (non-inferior, or enough information)
    CONTINUE = "continue"  # keep going: no regression proven, no promotion evidence yet
    FAIL = "fail"  # regression proven: roll back
    NO_DATA = "no_data"  # hold: missing data or source unavailable
    HALT = "halt"  # data quality: the comparison is invalid (e.g. sample-ratio mismatch)


@dataclass(frozen=True)
class MetricVerdict:
    """The judge's word on one metric after one tick, with its reason in plain units."""

    metric: str
    verdict: Verdict
    reason: str
    gate: bool = True  # False for diagnostics that never roll back or block promotion
    e_value: float | None = None  # rollback evidence (e-process value)
    threshold: float | None = None  # 1/alpha_j
    promotion_e_value: float | None = None
    ratio: float | None = None  # point estimate of the rate ratio theta
    ci: tuple[float, float] | None = None  # anytime-valid confidence sequence for theta
    canary: Mapping[str, float] = field(default_factory=dict)  # counts/rates for reports
    baseline: Mapping[str, float] = field(default_factory=dict)
    details: Mapping[str, Any] = field(default_factory=dict)


# ---- actions: idempotent, absolute statements of the desired state ----


@dataclass(frozen=True)
class SetWeights:
    weights: Mapping[str, int]  # subset -> integer weight; sums to 100

    def __post_init__(self) -> None:
        if sum(self.weights.values()) != 100 or any(w < 0 for w in self.weights.values()):
            raise ValueError(f"weights must be non-negative integers summing to 100: {dict(self.weights)}")


@dataclass(frozen=True)
class HeaderMatch:
    """An Istio HTTPMatchRequest header condition, e.g. end-user exact jason."""

    header: str
    value: str
    kind: str = "exact"  # exact | prefix | regex


@dataclass(frozen=True)
class SetHeaderRoute:
    match: HeaderMatch | None  # None removes the header route
    subset: str | None = None


@dataclass(frozen=True)
class Scale:
    subset: str
    replicas: int


@dataclass(frozen=True)
class RestoreRoute:
    """Put the managed route back as it was before the rollout (abort with `target.restoreOnAbort`)."""


@dataclass(frozen=True)
class Notify:
    event: Event
    message: str


Action = SetWeights | SetHeaderRoute | Scale | Notify | RestoreRoute


@dataclass(frozen=True)
class RouteDrift:
    """Someone else changed the managed route since our last write (an operator moving traffic back by hand)."""

    found: Mapping[str, int]  # the weights now on the route (empty when the route itself is gone)
    ours: Mapping[str, int]  # the weights we wrote last
    manager: str | None  # who, from the object's managedFields, when known
    detail: str  # what changed, in plain words

    def describe(self) -> str:
        who = f" by {self.manager}" if self.manager else ""
        return f"route changed{who}: {self.detail}"


@dataclass(frozen=True)
class ActionResult:
    action: Action
    ok: bool
    error: str | None = None


@dataclass(frozen=True)
class Decision:
    """What the policy chose for this tick and why."""

    kind: DecisionKind
    reason: str
    actions: tuple[Action, ...] = ()


@dataclass(frozen=True)
class HookAnswers:
    """What the gate hooks said this tick, for the policy (the engine makes the calls)."""

    blocked: str | None = None  # a confirm hook has not approved: hold, without using the budget
    stop: str | None = None  # a pre-rollout hook failed: stop before any traffic moves
    rollback: str | None = None  # a rollback hook asked for a rollback now
    rollout_failed: str | None = None  # a rollout hook failed this tick (counted toward its failure limit)


@dataclass(frozen=True)
class RolloutState:
    """Everything the policy needs to continue a rollout; persisted after every tick.

    `evidence` is the judge's state, kept opaque to the policy; None before the rollout starts.
    """

    rollout: str
    phase: Phase = Phase.PENDING
    step: int = -1  # index into the weight steps; -1 before the first step
    tick: int = 0
    started_at: datetime | None = None
    step_started_at: datetime | None = None
    step_ticks: int = 0  # intervals with data at the current step (dwell)
    step_ticks_all: int = 0  # all intervals at the current step, held ones included
    weights: Mapping[str, int] = field(default_factory=dict)  # last intended weights
    header_route: bool = False
    evidence: Evidence | None = None
    reason: str = ""
    decided_at: datetime | None = None  # when the final decision (promote, roll back, ...) was taken
    paused_from: Phase | None = None  # the phase a Paused/Inconclusive rollout resumes to
    failures: int = 0  # consecutive ticks whose actions failed
    hook_failures: int = 0  # failed `rollout` hook calls over the rollout
    confirm_wait_s: float = 0.0  # time spent waiting for confirm hooks; it does not use the budget
    # The last window edge both subsets had samples at: the next evidence window starts there (after a
    # gap it reaches back over it). None: start one interval before the window's end.
    last_edge: datetime | None = None

    @property
    def outcome(self) -> str | None:
        return OUTCOME_BY_PHASE.get(self.phase)
