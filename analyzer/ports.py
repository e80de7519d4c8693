"""The small interfaces the engine talks through. Adapters implement them; the core never imports adapters."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from analyzer.model import (
    ActionResult,
    Decision,
    Event,
    HeaderMatch,
    MetricVerdict,
    Observation,
    RolloutState,
    RouteDrift,
    Span,
)

if TYPE_CHECKING:
    from analyzer.config import Hook, RolloutSpec


class SourceUnavailable(Exception):
    """A source could not answer (HTTP error, timeout, malformed reply). The tick holds."""


class MetricSource(Protocol):
    def observe(self, spec: RolloutSpec, start: datetime, end: datetime) -> Observation:
        """Exact per-subset increments over [start, end). Missing series -> subset None.

        Raises SourceUnavailable when the source cannot be asked.
        """
        ...

    def query_lag(self, spec: RolloutSpec) -> float:
        """Seconds between a moment and when the source can answer for it (e.g. one scrape interval)."""
        ...


class TraceSource(Protocol):
    def spans(self, spec: RolloutSpec, start: datetime, end: datetime) -> Sequence[Span]:
        """Sampled spans that started in [start, end), subset set where it can be told. May raise SourceUnavailable."""
        ...


class TrafficRouter(Protocol):
    def get_weights(self, spec: RolloutSpec) -> dict[str, int]: ...

    def set_weights(self, spec: RolloutSpec, weights: dict[str, int]) -> None:
        """Idempotent: set the route's weights to exactly these integers (sum 100)."""
        ...

    def set_header_route(self, spec: RolloutSpec, match: HeaderMatch | None) -> None:
        """Idempotent: route requests matching `match` to the canary subset; None removes that route."""
        ...

    def drift(self, spec: RolloutSpec) -> RouteDrift | None:
        """What a third party changed on the managed route since our last write, and who; None when nothing.

        A route that differs from the intent because our own write failed is not drift (the engine retries).
        """
        ...

    def restore(self, spec: RolloutSpec) -> None:
        """Put the managed route back as it was before the rollout's first write, header route removed."""
        ...

    def annotate(self, spec: RolloutSpec, status: dict[str, str]) -> None:
        """Record the rollout's status (rollout id, phase, step, verdict) where operators look for it."""
        ...


class Scaler(Protocol):
    def scale(self, spec: RolloutSpec, subset: str, replicas: int) -> None: ...


class Notifier(Protocol):
    def notify(self, spec: RolloutSpec, event: Event, message: str, *, rollout: str, tick: int) -> None:
        """Tell people what happened; must not block the tick (queue slow deliveries)."""
        ...


@dataclass(frozen=True)
class LoadStats:
    """What the load generator achieved, beside the mesh's own figures."""

    target_rps: float
    sent: int
    completed: int
    client_errors: int  # transport failures and 5xx answers seen by the generator
    active_seconds: float

    @property
    def achieved_rps(self) -> float:
        return self.completed / self.active_seconds if self.active_seconds > 0 else 0.0

    @property
    def client_error_rate(self) -> float:
        return self.client_errors / self.completed if self.completed else 0.0


class LoadGenerator(Protocol):
    def set_active(self, active: bool) -> None:
        """Send load while active (analysis phases); stop at once when not (pause, terminal phases)."""
        ...

    def stats(self) -> LoadStats: ...


@dataclass(frozen=True)
class HookResult:
    hook: str
    type: str
    ok: bool
    status: int | None  # None when no answer came (timeout, refused)
    answer: str  # the receiver's body, or why no answer came
    seconds: float

    def describe(self) -> str:
        got = f"HTTP {self.status}" if self.status is not None else "no answer"
        return f"hook {self.hook!r} ({self.type}): {got}{': ' + self.answer if self.answer else ''}"


class HookRunner(Protocol):
    def call(self, spec: RolloutSpec, hook: Hook, *, rollout: str, phase: str) -> HookResult: ...


class Clock(Protocol):
    def now(self) -> datetime: ...


class Store(Protocol):
    def create_rollout(self, rollout_id: str, spec: RolloutSpec, spec_text: str, meta: dict) -> None: ...

    def record_intent(
        self,
        rollout_id: str,
        state: RolloutState,
        observation: Observation | None,
        verdicts: Sequence[MetricVerdict],
        decision: Decision,
    ) -> int:
        """Write the tick (state after the decision, before acting). Returns the tick row id."""
        ...

    def record_results(self, tick_id: int, results: Sequence[ActionResult]) -> None: ...

    def record_event(self, rollout_id: str, tick: int, kind: Event, message: str) -> None: ...

    def load_state(self, rollout_id: str) -> RolloutState | None: ...

    def active_rollouts(self) -> list[str]: ...


@dataclass(frozen=True)
class Adapters:
    """Everything a rollout talks to, built in one place (`analyzer.app.wiring`)."""

    metrics: MetricSource
    router: TrafficRouter
    scaler: Scaler
    notifier: Notifier
    store: Store
    clock: Clock
    traces: TraceSource | None = None
    load: LoadGenerator | None = None
    hooks: HookRunner | None = None
