"""One tick computes at a time; ticks waiting on I/O let another compute.

The daemon's tick pool is for waiting (Prometheus, Jaeger, the Kubernetes API, hooks), not for computing:
under the GIL, four threads judging at once do the same work as one, plus the cost of handing the GIL back
and forth (≈ 20% more CPU a tick, measured). So a tick holds the `ComputeLock` while it runs, and the
adapters that wait on the network give it up for the length of their call. The store keeps it: its calls are
short, and most of their time is Python (building statements, encoding the state).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from analyzer.ports import Adapters


class ComputeLock:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._mine = threading.local()

    @contextmanager
    def held(self) -> Iterator[None]:
        with self._lock:
            self._mine.held = True
            try:
                yield
            finally:
                self._mine.held = False

    @contextmanager
    def released(self) -> Iterator[None]:
        """Give the lock up while waiting, if this thread holds it (adapters are called outside ticks too)."""
        if not getattr(self._mine, "held", False):
            yield
            return
        self._mine.held = False
        self._lock.release()
        try:
            yield
        finally:
            self._lock.acquire()
            self._mine.held = True


class Released:
    """An adapter whose method calls give up the compute lock while they run."""

    def __init__(self, inner: Any, lock: ComputeLock) -> None:
        self._inner = inner
        self._lock = lock

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            with self._lock.released():
                return attr(*args, **kwargs)

        return call


def released(adapters: Adapters, lock: ComputeLock) -> Adapters:
    """The adapters that wait on the network, wrapped; the store, the clock and in-process adapters (simulated
    mesh, memory router; `in_process = True`) as they are."""

    def wrap(adapter: Any) -> Any:
        return adapter if adapter is None or getattr(adapter, "in_process", False) else Released(adapter, lock)

    return replace(adapters, metrics=wrap(adapters.metrics), traces=wrap(adapters.traces),
                   router=wrap(adapters.router), scaler=wrap(adapters.scaler), notifier=wrap(adapters.notifier),
                   load=wrap(adapters.load), hooks=wrap(adapters.hooks))
