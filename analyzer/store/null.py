"""A store that keeps nothing: for many-run simulations where only the outcomes matter."""

from __future__ import annotations

from collections.abc import Sequence

from analyzer.model import ActionResult, Decision, MetricVerdict, Observation, RolloutState


class NullStore:
    def __init__(self) -> None:
        self._ticks = 0
        self._states: dict[str, RolloutState] = {}

    def create_rollout(self, rollout_id: str, spec: object, spec_text: str, meta: dict) -> None:
        return None

    def record_intent(self, rollout_id: str, state: RolloutState, observation: Observation | None,
                      verdicts: Sequence[MetricVerdict], decision: Decision) -> int:
        self._ticks += 1
        self._states[rollout_id] = state
        return self._ticks

    def record_results(self, tick_id: int, results: Sequence[ActionResult]) -> None:
        return None

    def record_event(self, rollout_id: str, tick: int, kind: str, message: str) -> None:
        return None

    def load_state(self, rollout_id: str) -> RolloutState | None:
        return self._states.get(rollout_id)

    def active_rollouts(self) -> list[str]:
        return [k for k, s in self._states.items() if not s.phase.terminal]
