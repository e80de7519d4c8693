"""In-memory traffic router: the embedded default and the simulated mesh's routing table."""

from __future__ import annotations

import threading

from analyzer.config import RolloutSpec
from analyzer.model import HeaderMatch, RouteDrift

MANAGER = "canary-analyzer"


class MemoryRouter:
    """Keeps, per VirtualService route, integer weights per subset and an optional header route."""

    in_process = True  # no I/O: the daemon need not give up its compute lock around calls

    def __init__(self) -> None:
        self._weights: dict[str, dict[str, int]] = {}
        self._headers: dict[str, HeaderMatch | None] = {}
        self._ours: dict[str, dict[str, int]] = {}  # the weights we wrote last, per route
        self._original: dict[str, dict[str, int] | None] = {}  # the weights before our first write
        self._manager: dict[str, str] = {}  # who wrote the weights last
        self.status: dict[str, dict[str, str]] = {}  # annotate(): the rollout's status per route
        self._lock = threading.Lock()
        self.writes = 0  # how many changes were applied (idempotent calls that change nothing don't count)

    @staticmethod
    def _key(spec: RolloutSpec) -> str:
        t = spec.target
        return f"{t.namespace}/{t.virtual_service}/{t.route or ''}"

    def get_weights(self, spec: RolloutSpec) -> dict[str, int]:
        with self._lock:
            default = {spec.target.baseline.subset: 100, spec.target.canary.subset: 0}
            return dict(self._weights.get(self._key(spec), default))

    def set_weights(self, spec: RolloutSpec, weights: dict[str, int]) -> None:
        self._write(spec, weights, MANAGER)

    def edit_by(self, manager: str, spec: RolloutSpec, weights: dict[str, int]) -> None:
        """A third party (an operator, a GitOps tool) writes the route, as `kubectl edit` would."""
        self._write(spec, weights, manager)

    def _write(self, spec: RolloutSpec, weights: dict[str, int], manager: str) -> None:
        if sum(weights.values()) != 100 or any(not isinstance(w, int) or w < 0 for w in weights.values()):
            raise ValueError(f"weights must be non-negative integers summing to 100, got {weights}")
        key = self._key(spec)
        with self._lock:
            if manager == MANAGER:
                self._original.setdefault(key, self._weights.get(key))
                self._ours[key] = dict(weights)
            if self._weights.get(key) != weights:
                self._weights[key] = dict(weights)
                self._manager[key] = manager
                self.writes += 1

    def drift(self, spec: RolloutSpec) -> RouteDrift | None:
        key = self._key(spec)
        with self._lock:
            ours, now = self._ours.get(key), self._weights.get(key)
            if ours is None or now is None or now == ours:
                return None
            return RouteDrift(found=dict(now), ours=dict(ours), manager=self._manager.get(key),
                              detail=f"weights {ours} became {now}")

    def restore(self, spec: RolloutSpec) -> None:
        key = self._key(spec)
        with self._lock:
            original = self._original.get(key)
            default = {spec.target.baseline.subset: 100, spec.target.canary.subset: 0}
            self._weights[key] = dict(original or default)
            self._ours[key] = dict(self._weights[key])
            self._headers[key] = None
            self.writes += 1

    def annotate(self, spec: RolloutSpec, status: dict[str, str]) -> None:
        with self._lock:
            self.status[self._key(spec)] = dict(status)

    def header_route(self, spec: RolloutSpec) -> HeaderMatch | None:
        with self._lock:
            return self._headers.get(self._key(spec))

    def set_header_route(self, spec: RolloutSpec, match: HeaderMatch | None) -> None:
        with self._lock:
            if self._headers.get(self._key(spec)) != match:
                self._headers[self._key(spec)] = match
                self.writes += 1
