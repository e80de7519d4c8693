"""Synthetic load for low-traffic services: a fixed-rate HTTP client with bounded concurrency.

Requests are sent at most at the configured rate: each slot of 1/rps seconds sends one request if a
slot in the concurrency bound is free, and skips it otherwise; a late loop never bursts to catch up.
The client runs on its own event loop in a background thread, so the rollout's tick never waits on it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time

import httpx
import structlog

from analyzer.config import Load
from analyzer.ports import LoadStats

log = structlog.get_logger(__name__)


class HttpLoadGenerator:
    """Implements `analyzer.ports.LoadGenerator` with httpx."""

    def __init__(self, load: Load, url: str, *, rps: float | None = None) -> None:
        self.load, self.url = load, url
        self.rps = rps if rps is not None else load.rps
        self._sent = self._completed = self._errors = 0
        self._active_s = 0.0
        self._since: float | None = None
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._task: concurrent.futures.Future[None] | None = None
        self._halt = threading.Event()  # the run loop ends itself, so the HTTP client closes on its own loop
        threading.Thread(target=self._loop.run_forever, name="load-generator", daemon=True).start()

    def set_active(self, active: bool) -> None:
        with self._lock:
            running = self._task is not None and not self._task.done()
            if active and not running:
                self._since = time.monotonic()
                self._halt.clear()
                self._task = asyncio.run_coroutine_threadsafe(self._run(), self._loop)
                log.info("load_started", url=self.url, rps=self.rps)
            elif not active and running:
                assert self._task is not None
                self._halt.set()
                self._active_s += time.monotonic() - (self._since or time.monotonic())
                self._since = None
                task = self._task
        if not active and running:
            try:
                task.result(timeout=self.load.timeout + 2)
            except Exception:  # timed out, cancelled or failed: the loop must not outlive the rollout
                task.cancel()
            log.info("load_stopped", url=self.url, sent=self._sent)

    def stats(self) -> LoadStats:
        with self._lock:
            active = self._active_s + (time.monotonic() - self._since if self._since is not None else 0.0)
            return LoadStats(self.rps, self._sent, self._completed, self._errors, active)

    def close(self) -> None:
        self.set_active(False)
        self._loop.call_soon_threadsafe(self._loop.stop)

    async def _run(self) -> None:
        period = 1.0 / self.rps
        slots = asyncio.Semaphore(self.load.concurrency)
        pending: set[asyncio.Task[None]] = set()
        async with httpx.AsyncClient(timeout=self.load.timeout) as client:
            next_at = time.monotonic()
            try:
                while not self._halt.is_set():
                    now = time.monotonic()
                    if next_at > now:
                        await asyncio.sleep(next_at - now)
                    elif now - next_at > period:
                        next_at = now  # late: skip the missed slots instead of bursting
                    next_at += period
                    if slots.locked():
                        continue  # all connections busy: this slot is skipped, never queued
                    await slots.acquire()
                    task = asyncio.create_task(self._one(client, slots))
                    pending.add(task)
                    task.add_done_callback(pending.discard)
            finally:
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)

    async def _one(self, client: httpx.AsyncClient, slots: asyncio.Semaphore) -> None:
        with self._lock:
            self._sent += 1
        failed = False
        try:
            reply = await client.request(self.load.method, self.url, headers=self.load.headers,
                                         content=self.load.body)
            failed = reply.status_code >= 500
        except httpx.HTTPError:
            failed = True
        finally:
            slots.release()
        with self._lock:
            self._completed += 1
            self._errors += failed
