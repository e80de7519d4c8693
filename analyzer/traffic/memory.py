"""In-memory traffic router: the embedded default and the simulated mesh's routing table."""

from __future__ import annotations

import threading

from analyzer.config import RolloutSpec
from analyzer.model import HeaderMatch


class MemoryRouter:
    """Keeps, per VirtualService route, integer weights per subset and an optional header route."""

    def __init__(self) -> None:
        self._weights: dict[str, dict[str, int]] = {}
        self._headers: dict[str, HeaderMatch | None] = {}
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
        if sum(weights.values()) != 100 or any(not isinstance(w, int) or w < 0 for w in weights.values()):
            raise ValueError(f"weights must be non-negative integers summing to 100, got {weights}")
        with self._lock:
            if self._weights.get(self._key(spec)) != weights:
                self._weights[self._key(spec)] = dict(weights)
                self.writes += 1

    def header_route(self, spec: RolloutSpec) -> HeaderMatch | None:
        with self._lock:
            return self._headers.get(self._key(spec))

    def set_header_route(self, spec: RolloutSpec, match: HeaderMatch | None) -> None:
        with self._lock:
            if self._headers.get(self._key(spec)) != match:
                self._headers[self._key(spec)] = match
                self.writes += 1
