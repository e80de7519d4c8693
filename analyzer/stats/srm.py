"""Sample-ratio mismatch: Lindon–Malek beta-binomial mixture e-process (statistics.md §3.2, §5.4).

The configured canary share changes at every weight step, so the test restarts per step and the
finished steps' Bayes factors are multiplied in: a concatenation of test martingales, each starting
at 1 given the past, is a test martingale.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy.special import betaln

CONCENTRATION = 1e4  # prior concentration around the configured share; SRM effects of interest are small


def log_bayes_factor(x: int, m: int, rho: float, k: float = CONCENTRATION) -> float:
    """Two-sided Beta(kρ, k(1−ρ)) mixture against Bin(m, ρ) for x canary requests out of m."""
    if m == 0:
        return 0.0
    a, b = k * rho, k * (1.0 - rho)
    return float(betaln(a + x, b + m - x) - betaln(a, b) - x * math.log(rho) - (m - x) * math.log1p(-rho))


@dataclass(frozen=True)
class SrmEvidence:
    log_done: float = 0.0  # sum of log Bayes factors of finished segments
    share: float | None = None  # configured canary share of the open segment
    x: int = 0
    m: int = 0

    def update(self, canary: int, baseline: int, share: float) -> SrmEvidence:
        if not 0.0 < share < 1.0:  # all traffic on one side: nothing to test
            return self
        if self.share is None or not math.isclose(share, self.share):
            closed = self.log_done + (log_bayes_factor(self.x, self.m, self.share) if self.share else 0.0)
            return SrmEvidence(closed, share, canary, canary + baseline)
        return SrmEvidence(self.log_done, share, self.x + canary, self.m + canary + baseline)

    @property
    def log_e(self) -> float:
        open_part = log_bayes_factor(self.x, self.m, self.share) if self.share else 0.0
        return self.log_done + open_part

    @property
    def observed_share(self) -> float | None:
        return self.x / self.m if self.m else None

    def to_json(self) -> dict:
        return {"log_done": self.log_done, "share": self.share, "x": self.x, "m": self.m}

    @classmethod
    def from_json(cls, data: dict) -> SrmEvidence:
        return cls(float(data["log_done"]), data["share"], int(data["x"]), int(data["m"]))
