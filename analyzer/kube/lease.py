"""Leader election on a `coordination.k8s.io` Lease: only the holder ticks rollouts.

The acquire/renew/take-over rule is the client library's (`kubernetes.leaderelection`): a follower takes the
Lease over once it has seen no renewal for `lease_duration` by its own clock, and every write is a PUT with
the Lease's resourceVersion, so two replicas cannot both win one round. Around it, what the library lacks for a
daemon: its lock uses the process-wide default client (we pass ours), its loop blocks and cannot be stopped,
and it exits the process on a bad setting. Here a thread runs rounds until `stop()`, and `is_leader()` turns
False `renew_deadline` after the last successful renewal began, which is before any follower may take over
(`renew_deadline < lease_duration`): a replica that loses the Lease stops before another can start.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import structlog
from kubernetes import client
from kubernetes.client.rest import ApiException
from kubernetes.leaderelection.leaderelection import LeaderElection
from kubernetes.leaderelection.resourcelock.leaselock import LeaseLock

from analyzer.errors import UserError

log = structlog.get_logger("analyzer.kube.lease")


class LeaseSettingsError(UserError):
    pass


@dataclass(frozen=True)
class _ElectionConfig:
    """The attributes `LeaderElection` reads (its own Config calls sys.exit on bad values)."""

    lock: LeaseLock
    lease_duration: int
    renew_deadline: float
    retry_period: float


class _Timed:
    """Passes a request timeout to every call, so a silent API server cannot stall a round for long."""

    def __init__(self, api: client.CoordinationV1Api, timeout: float) -> None:
        self._api, self._timeout = api, timeout

    def __getattr__(self, name: str) -> Callable[..., object]:
        call = getattr(self._api, name)
        return lambda *args, **kwargs: call(*args, _request_timeout=self._timeout, **kwargs)


class _Lock(LeaseLock):
    def __init__(self, api: client.ApiClient, name: str, namespace: str, identity: str, timeout: float) -> None:
        super().__init__(name, namespace, identity)
        # Ours, not the library's process-wide default client.
        self.api_instance = _Timed(client.CoordinationV1Api(api), timeout)


def default_identity() -> str:
    return os.environ.get("POD_NAME") or f"{socket.gethostname()}-{uuid.uuid4().hex[:6]}"


class LeaseElector:
    """Start with `start()`, ask `is_leader()` before each tick, `stop()` on shutdown (releases the Lease)."""

    def __init__(self, api: client.ApiClient, *, namespace: str, name: str = "canary-analyzer",
                 identity: str | None = None, lease_duration: int = 15, renew_deadline: float = 10.0,
                 retry_period: float = 2.0, on_started: Callable[[], None] | None = None,
                 on_stopped: Callable[[], None] | None = None) -> None:
        if lease_duration < 1 or int(lease_duration) != lease_duration:
            raise LeaseSettingsError(f"lease duration: {lease_duration!r} must be a whole number of seconds >= 1")
        if not 0 < renew_deadline < lease_duration:
            raise LeaseSettingsError(f"renew deadline: {renew_deadline}s must be above 0 and below the lease "
                                     f"duration {lease_duration}s")
        if not 0 < retry_period < renew_deadline:
            raise LeaseSettingsError(f"retry period: {retry_period}s must be above 0 and below the renew deadline "
                                     f"{renew_deadline}s")
        self.identity = identity or default_identity()
        self.namespace, self.name = namespace, name
        self._lock = _Lock(api, name, namespace, self.identity, timeout=renew_deadline / 2)
        self._api = client.CoordinationV1Api(api)
        self._election = LeaderElection(_ElectionConfig(self._lock, int(lease_duration), renew_deadline,
                                                        retry_period))
        self.renew_deadline, self.retry_period = renew_deadline, retry_period
        self.on_started, self.on_stopped = on_started, on_stopped
        self._renewed_at: float | None = None  # monotonic time the last successful round began
        self._leading = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def is_leader(self) -> bool:
        until = self.leading_until()
        return until is not None and time.monotonic() < until

    def leading_until(self) -> float | None:
        """The monotonic time our leadership ends unless renewed first; None when not leading."""
        at = self._renewed_at
        return at + self.renew_deadline if self._leading and at is not None else None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"lease-{self.name}", daemon=True)
            self._thread.start()

    def stop(self, *, release: bool = True) -> None:
        """Stop electing; with `release`, hand the Lease over at once instead of letting it expire."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.renew_deadline + 5)
            self._thread = None
        was = self._leading
        self._set_leading(False)
        if release and was:
            self._release()

    def round(self) -> bool:
        """One acquire-or-renew round (the library's rule). True when we hold the Lease now."""
        began = time.monotonic()
        try:
            ok = bool(self._election.try_acquire_or_renew())
        except Exception as exc:  # connection errors: a failed round, like a refused write
            log.info("lease round failed", lease=self.name, error=str(exc))
            ok = False
        if ok:
            self._renewed_at = began
            self._set_leading(True)
        elif self._leading and not self.is_leader():
            self._set_leading(False)
        return ok

    def _run(self) -> None:
        while not self._stop.is_set():
            self.round()
            # Wake up in time to notice the deadline passing even when the API server does not answer.
            self._stop.wait(self.retry_period)
            if self._leading and not self.is_leader():
                self._set_leading(False)

    def _set_leading(self, leading: bool) -> None:
        if leading == self._leading:
            return
        self._leading = leading
        log.info("leader" if leading else "no longer leader", lease=self.name, identity=self.identity)
        callback = self.on_started if leading else self.on_stopped
        if callback is not None:
            callback()

    def _release(self) -> None:
        try:
            lease = self._api.read_namespaced_lease(self.name, self.namespace)
            if lease.spec is None or lease.spec.holder_identity != self.identity:
                return
            lease.spec.holder_identity = None  # an empty holder is taken over at once by the next round
            self._api.replace_namespaced_lease(self.name, self.namespace, lease)
        except ApiException as exc:
            log.info("lease not released", lease=self.name, status=exc.status)
