"""Chat and webhook notifications: a generic JSON webhook, Slack-compatible incoming webhooks (Slack,
Mattermost, Rocket.Chat) and Microsoft Teams workflow webhooks.

Delivery never blocks or fails a tick: `notify` only puts the message on a bounded queue; one worker
thread posts it with retries and backoff, and every delivery that finally fails is reported through
`on_failure` (the wiring records it as an event of the rollout).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import httpx
import structlog

from analyzer.config import RolloutSpec
from analyzer.model import Event

Kind = Literal["webhook", "slack", "teams"]
FailureHook = Callable[[str, int, str], None]  # (rollout, tick, why)
MAX_TEXT = 600  # one line in a chat; the report page has the rest

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Message:
    kind: Kind
    url: str
    rollout: str
    tick: int
    payload: dict[str, Any]


def one_line(spec: RolloutSpec, rollout: str, event: Event, message: str, report_url: str | None) -> str:
    t = spec.target
    text = " ".join(message.split())
    if len(text) > MAX_TEXT:
        text = text[: MAX_TEXT - 1] + "…"
    line = f"[{spec.name} in {t.namespace}, {t.baseline.subset}->{t.canary.subset}] {event.value}: {text}"
    return f"{line} ({report_url})" if report_url else line


def payload(kind: Kind, spec: RolloutSpec, rollout: str, event: Event, message: str,
            report_url: str | None) -> dict[str, Any]:
    text = one_line(spec, rollout, event, message, report_url)
    if kind == "slack":
        return {"text": text}
    if kind == "teams":  # a workflow webhook takes an Adaptive Card in a message
        return {"type": "message", "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "content": {"$schema": "http://adaptivecards.io/schemas/adaptive-card.json", "type": "AdaptiveCard",
                        "version": "1.4", "body": [{"type": "TextBlock", "text": text, "wrap": True}]},
        }]}
    return {"rollout": rollout, "name": spec.name, "namespace": spec.target.namespace,
            "virtualService": spec.target.virtual_service, "event": event.value, "message": message, "text": text,
            "reportUrl": report_url, "timestamp": datetime.now(UTC).isoformat()}


class Delivery:
    """A bounded queue and one worker thread that posts with retries; shared by every webhook notifier."""

    def __init__(self, *, capacity: int = 200, attempts: int = 3, timeout_s: float = 5.0, backoff_s: float = 0.5,
                 on_failure: FailureHook | None = None) -> None:
        self._queue: queue.Queue[Message | None] = queue.Queue(maxsize=capacity)
        self.attempts, self.timeout_s, self.backoff_s = attempts, timeout_s, backoff_s
        self.on_failure = on_failure
        self.delivered = 0
        self._client = httpx.Client(timeout=timeout_s)
        self._worker = threading.Thread(target=self._run, name="notify-delivery", daemon=True)
        self._worker.start()

    def submit(self, message: Message) -> None:
        try:
            self._queue.put_nowait(message)
        except queue.Full:
            self._failed(message, "notification queue full; message dropped")

    def close(self, timeout_s: float = 5.0) -> None:
        """Deliver what is queued (up to timeout_s), then stop the worker."""
        try:
            self._queue.put(None, timeout=timeout_s)
        except queue.Full:
            return
        self._worker.join(timeout_s)
        self._client.close()

    def _run(self) -> None:
        while (message := self._queue.get()) is not None:
            self._deliver(message)

    def _deliver(self, message: Message) -> None:
        why = ""
        for attempt in range(self.attempts):
            if attempt:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            try:
                reply = self._client.post(message.url, json=message.payload)
            except httpx.HTTPError as exc:
                why = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                continue
            if reply.status_code < 300:
                self.delivered += 1
                return
            why = f"HTTP {reply.status_code}: {reply.text[:200]}"
        self._failed(message, f"{message.kind} notification not delivered after {self.attempts} attempts ({why})")

    def _failed(self, message: Message, why: str) -> None:
        log.warning("notification_failed", rollout=message.rollout, kind=message.kind, why=why)
        if self.on_failure is not None:
            try:
                self.on_failure(message.rollout, message.tick, why)
            except Exception as exc:  # recording a failure must never kill the worker
                log.error("notification_failure_unrecorded", rollout=message.rollout, error=str(exc))


class WebhookNotifier:
    """One configured target: its kind, URL, the events it wants, and where reports live."""

    def __init__(self, kind: Kind, url: str, delivery: Delivery, *, events: Iterable[Event] | None = None,
                 report_base_url: str | None = None) -> None:
        self.kind, self.url, self.delivery = kind, url, delivery
        self.events = frozenset(events) if events is not None else None
        self.report_base_url = report_base_url.rstrip("/") if report_base_url else None

    def notify(self, spec: RolloutSpec, event: Event, message: str, *, rollout: str, tick: int) -> None:
        if self.events is not None and event not in self.events:
            return
        report = f"{self.report_base_url}/v1/rollouts/{rollout}/report" if self.report_base_url else None
        self.delivery.submit(Message(self.kind, self.url, rollout, tick,
                                     payload(self.kind, spec, rollout, event, message, report)))


class FanOut:
    """Several notifiers as one: each gets every notification; one failing never stops the others."""

    def __init__(self, notifiers: Iterable[Any], deliveries: Iterable[Delivery] = ()) -> None:
        self.notifiers = list(notifiers)
        self.deliveries = list(deliveries)

    def close(self) -> None:
        """Deliver what is still queued, then stop (the end of a CLI run)."""
        for d in self.deliveries:
            d.close()

    def notify(self, spec: RolloutSpec, event: Event, message: str, *, rollout: str, tick: int) -> None:
        for n in self.notifiers:
            try:
                n.notify(spec, event, message, rollout=rollout, tick=tick)
            except Exception as exc:
                log.error("notifier_failed", rollout=rollout, notifier=type(n).__name__, error=str(exc))
