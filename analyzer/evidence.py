"""The judge's evidence: the state of every e-process of a rollout, typed.

One entry per user metric, plus the traffic-split (SRM) e-process and the Kayenta gate's series as
fields of their own, so a user metric can never collide with them. The store encodes it
(`to_json`/`from_json`); the policy treats it as opaque.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from analyzer.stats.rate_ratio import RatioEvidence
from analyzer.stats.srm import SrmEvidence

FORMAT = 2  # version 1 was a plain dict keyed by metric name, with "traffic-split" and "kayenta" inside
OLD_SRM_KEY, OLD_KAYENTA_KEY = "traffic-split", "kayenta"


@dataclass(frozen=True)
class EdgeEvidence:
    """Exceedance e-processes at pre-registered edges (latency, traces), and the pooled histograms."""

    edges: Mapping[str, RatioEvidence]
    hist_canary: tuple[int, ...] = ()
    hist_baseline: tuple[int, ...] = ()


@dataclass(frozen=True)
class CustomEvidence:
    """A templated custom metric: how many intervals in a row broke its bounds."""

    failures: int = 0


MetricEvidence = RatioEvidence | EdgeEvidence | CustomEvidence


@dataclass(frozen=True)
class Evidence:
    metrics: Mapping[str, MetricEvidence]
    srm: SrmEvidence = field(default_factory=SrmEvidence)
    kayenta: Mapping[str, tuple[tuple[float, float], ...]] | None = None  # series name -> (baseline, canary) points

    def with_metric(self, name: str, value: MetricEvidence) -> Evidence:
        return Evidence({**self.metrics, name: value}, self.srm, self.kayenta)

    # ---- JSON (the store boundary) ----

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "srm": self.srm.to_json(),
            "kayenta": None if self.kayenta is None else {k: [list(p) for p in v] for k, v in self.kayenta.items()},
            "metrics": {name: _metric_json(m) for name, m in self.metrics.items()},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Evidence:
        """Reads this format and version 1 (rows written before the evidence was typed)."""
        if data.get("format") == FORMAT:
            kayenta = data.get("kayenta")
            return cls(
                metrics={name: _metric_from_json(m) for name, m in data["metrics"].items()},
                srm=SrmEvidence.from_json(data["srm"]),
                kayenta=None if kayenta is None else _series(kayenta),
            )
        metrics = {k: _metric_from_json(v) for k, v in data.items() if k not in (OLD_SRM_KEY, OLD_KAYENTA_KEY)}
        srm = SrmEvidence.from_json(data[OLD_SRM_KEY]) if OLD_SRM_KEY in data else SrmEvidence()
        kayenta = data.get(OLD_KAYENTA_KEY)
        return cls(metrics, srm, None if kayenta is None else _series(kayenta))


def _series(data: Mapping[str, Any]) -> dict[str, tuple[tuple[float, float], ...]]:
    return {k: tuple((float(b), float(c)) for b, c in v) for k, v in data.items()}


def _metric_json(m: MetricEvidence) -> dict[str, Any]:
    if isinstance(m, RatioEvidence):
        return {"type": "ratio", **m.to_json()}
    if isinstance(m, EdgeEvidence):
        return {"type": "edges", "edges": {k: e.to_json() for k, e in m.edges.items()},
                "hist_canary": list(m.hist_canary), "hist_baseline": list(m.hist_baseline)}
    return {"type": "custom", "failures": m.failures}


def _metric_from_json(d: Mapping[str, Any]) -> MetricEvidence:
    kind = d.get("type")
    if kind == "ratio" or (kind is None and "pen" in d):
        return RatioEvidence.from_json(dict(d))
    if kind == "custom" or (kind is None and "failures" in d):
        return CustomEvidence(int(d.get("failures", 0)))
    if kind == "edges":
        edges = {k: RatioEvidence.from_json(e) for k, e in d["edges"].items()}
    else:  # version 1: edge keys beside hist_canary / hist_baseline
        edges = {k: RatioEvidence.from_json(e) for k, e in d.items() if not k.startswith("hist_")}
    return EdgeEvidence(edges, tuple(d.get("hist_canary") or ()), tuple(d.get("hist_baseline") or ()))
