"""Gate and event hooks over HTTP with Flagger's webhook contract (peers.md F.3), so receivers written for
Flagger (its load tester, approval services) work unchanged.

A call POSTs `{"name", "namespace", "phase", "checksum", "metadata"}`; a status of 202 or below is success,
anything else (203 and 204 included), a timeout or a refused connection is a failure.
"""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime
from typing import Any

import httpx

from analyzer.config import Hook, RolloutSpec
from analyzer.model import Event
from analyzer.notify.webhook import Delivery, Message
from analyzer.ports import HookResult

MAX_BODY = 300  # of the receiver's answer, kept with the result


def checksum(rollout: str) -> str:
    """Identifies one release of one target, like Flagger's: a new rollout gets a new checksum."""
    return hashlib.sha256(rollout.encode()).hexdigest()[:16]


def payload(spec: RolloutSpec, hook: Hook, *, rollout: str, phase: str,
            extra: dict[str, str] | None = None) -> dict[str, Any]:
    return {"name": spec.name, "namespace": spec.target.namespace, "phase": phase, "checksum": checksum(rollout),
            "metadata": {**hook.metadata, **(extra or {})}}


class HttpHooks:
    """Implements `analyzer.ports.HookRunner`."""

    def __init__(self, client: httpx.Client | None = None) -> None:
        self.client = client or httpx.Client()

    def call(self, spec: RolloutSpec, hook: Hook, *, rollout: str, phase: str) -> HookResult:
        began = time.monotonic()
        try:
            reply = self.client.post(hook.url, json=payload(spec, hook, rollout=rollout, phase=phase),
                                     timeout=hook.timeout)
        except httpx.HTTPError as exc:
            why = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            return HookResult(hook.name, hook.type, False, None, why, time.monotonic() - began)
        body = " ".join(reply.text.split())[:MAX_BODY]
        return HookResult(hook.name, hook.type, reply.status_code <= 202, reply.status_code, body,
                          time.monotonic() - began)

    def close(self) -> None:
        self.client.close()


class EventHookNotifier:
    """`event` hooks: every notification as Flagger's event webhook payload, through the delivery queue."""

    def __init__(self, hooks: list[Hook], delivery: Delivery) -> None:
        self.hooks, self.delivery = hooks, delivery

    def notify(self, spec: RolloutSpec, event: Event, message: str, *, rollout: str, tick: int) -> None:
        extra = {"eventMessage": message, "eventType": "Warning" if event in WARNINGS else "Normal",
                 "timestamp": str(int(datetime.now(UTC).timestamp() * 1000))}
        for hook in self.hooks:
            body = payload(spec, hook, rollout=rollout, phase=event.value, extra=extra)
            self.delivery.submit(Message("webhook", hook.url, rollout, tick, body))


WARNINGS = frozenset({Event.ROLLBACK, Event.ABORT, Event.FAILED, Event.PAUSE, Event.INCONCLUSIVE, Event.DRIFT})
