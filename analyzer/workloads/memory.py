"""In-memory scaler: the embedded default; records the replicas asked per subset."""

from __future__ import annotations

from analyzer.config import RolloutSpec


class MemoryScaler:
    in_process = True  # no I/O: the daemon need not give up its compute lock around calls

    def __init__(self) -> None:
        self.replicas: dict[str, int] = {}

    def scale(self, spec: RolloutSpec, subset: str, replicas: int) -> None:
        self.replicas[subset] = replicas
