"""Load in the simulator: while active, the generator's rate adds to the scenario's traffic."""

from __future__ import annotations

from analyzer.ports import LoadStats
from analyzer.sim.mesh import SimulatedMesh


class SimulatedLoad:
    """Implements `analyzer.ports.LoadGenerator` on the simulated mesh (virtual time)."""

    in_process = True  # no I/O: the daemon need not give up its compute lock around calls

    def __init__(self, mesh: SimulatedMesh, rps: float) -> None:
        self.mesh, self.rps = mesh, rps

    def set_active(self, active: bool) -> None:
        self.mesh.extra_rps = self.rps if active else 0.0

    def stats(self) -> LoadStats:
        return LoadStats(self.rps, self.mesh.extra_requests, self.mesh.extra_requests, 0, self.mesh.extra_seconds)
