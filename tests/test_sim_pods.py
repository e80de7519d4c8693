"""Issue 9 §1 (simulator): per-pod effects. Each subset has pods, each pod a per-interval error-rate and latency
effect (log-normal, mean 1); histograms and traces follow the same pods; old scenarios keep their draws."""

from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from analyzer.config import SpecError, load_spec
from analyzer.sim.clock import EPOCH
from analyzer.sim.mesh import SimulatedMesh
from analyzer.sim.scenario import Latency, Scenario, Subset, Traffic, load_scenario
from analyzer.traffic.memory import MemoryRouter

ROOT = Path(__file__).resolve().parents[1]
SPEC = load_spec(ROOT / "config/examples/reviews.yaml")


class Sink:
    def __init__(self) -> None:
        self.scales: list[dict[str, float] | None] = []

    def record(self, start, end, requests_by_subset, latency_scale=None):
        self.scales.append(dict(latency_scale) if latency_scale else None)


def _run(scenario: Scenario, minutes: int = 200, seed: int = 1) -> tuple[SimulatedMesh, Sink]:
    router = MemoryRouter()
    router.set_weights(SPEC, {"v1": 50, "v2": 50})
    mesh = SimulatedMesh(scenario, router, seed=seed, start=EPOCH, edges=SPEC.analysis.bucket_edges)
    mesh.trace_sink = sink = Sink()
    for k in range(minutes):
        mesh.simulate(SPEC, EPOCH + timedelta(minutes=k), EPOCH + timedelta(minutes=k + 1))
    return mesh, sink


def _scenario(**kw: object) -> Scenario:
    base = Subset(error_rate=0.01, latency=Latency(median_ms=50, sigma=0.5), pods=kw.pop("pods_b", 5))
    canary = Subset(error_rate=0.01, latency=Latency(median_ms=50, sigma=0.5), pods=kw.pop("pods_c", 1))
    return Scenario(traffic=Traffic(rps=1000), baseline=base, canary=canary, **kw)


def test_pod_noise_is_mean_preserving_and_overdispersed() -> None:
    mesh, _ = _run(_scenario(pod_error_sigma=0.5))
    c = np.array([(i.canary.errors, i.canary.requests) for i in mesh.history], dtype=float)
    b = np.array([(i.baseline.errors, i.baseline.requests) for i in mesh.history], dtype=float)
    assert c[:, 0].sum() / c[:, 1].sum() == pytest.approx(0.01, rel=0.1)  # mean 1 effect
    assert b[:, 0].sum() / b[:, 1].sum() == pytest.approx(0.01, rel=0.1)
    share = c[:, 0] / (c[:, 0] + b[:, 0])
    rho = c[:, 1] / (c[:, 1] + b[:, 1])
    binomial = np.mean(rho * (1 - rho) / (c[:, 0] + b[:, 0]))
    assert np.var(share - rho) > 5 * binomial  # one canary pod against five: its noise is barely averaged


def test_latency_jitter_follows_the_pods_into_histograms_and_traces() -> None:
    mesh, sink = _run(_scenario(pod_latency_sigma=0.03), minutes=60)
    edge = SPEC.analysis.bucket_edges.index(100.0)
    slow_c = np.array([i.canary.slow(edge) / i.canary.requests for i in mesh.history])
    slow_b = np.array([i.baseline.slow(edge) / i.baseline.requests for i in mesh.history])
    assert np.std(np.log(slow_c / slow_b)) > 0.1  # 3% median jitter moves the share above 100 ms by ~15%
    scales = [s for s in sink.scales if s]
    assert len(scales) == 60 and np.std([s["v2"] for s in scales]) == pytest.approx(0.03, rel=0.4)


def test_scenarios_without_pod_fields_keep_their_draws() -> None:
    old = _run(Scenario(traffic=Traffic(rps=100)), minutes=20)[0].history
    one_pod = _run(Scenario(traffic=Traffic(rps=100), baseline=Subset(pods=1)), minutes=20)[0].history
    assert [(i.baseline, i.canary) for i in old] == [(i.baseline, i.canary) for i in one_pod]


@pytest.mark.parametrize(("text", "field"), [
    ("baseline: {pods: 0}", "baseline.pods"),
    ("podErrorSigma: .nan", "podErrorSigma"),
    ("podLatencySigma: -1", "podLatencySigma"),
])
def test_bad_pod_fields_name_the_field(tmp_path: Path, text: str, field: str) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(text + "\n")
    with pytest.raises(SpecError, match=field):
        load_scenario(str(path))
