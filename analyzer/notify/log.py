"""Log notifier: notifications go to the structured log."""

from __future__ import annotations

import structlog

from analyzer.config import RolloutSpec
from analyzer.model import Event


class LogNotifier:
    """Notifications go to the structured log (and the store's events, written by the engine)."""

    def __init__(self) -> None:
        self._log = structlog.get_logger("analyzer.notify")
        self.sent: list[tuple[str, str]] = []

    def notify(self, spec: RolloutSpec, event: Event, message: str, *, rollout: str, tick: int) -> None:
        self.sent.append((event, message))
        self._log.info("notify", rollout=rollout, target=spec.name, tick=tick, notify_event=event.value,
                       message=message)
