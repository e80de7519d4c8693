"""The one composition root: a spec plus the process settings -> the adapters a rollout talks to.

Every entry point (`demo`, `simulate`, `judge`, `run`, `serve`, the tests and the benchmarks) builds its
adapters here, so a new entry point never wires them by hand. The embedded default is the simulated
mesh with the in-memory router; in a cluster, Prometheus and Jaeger from the spec's `sources`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from analyzer.config import JaegerSource, Load, Notification, PrometheusSource, RolloutSpec, SpecError
from analyzer.model import Event
from analyzer.notify.log import LogNotifier
from analyzer.notify.webhook import Delivery, FanOut, WebhookNotifier
from analyzer.ports import (
    Adapters,
    Clock,
    HookRunner,
    LoadGenerator,
    MetricSource,
    Notifier,
    Scaler,
    Store,
    TraceSource,
    TrafficRouter,
)
from analyzer.sim.clock import EPOCH, VirtualClock, WallClock
from analyzer.sim.mesh import SimulatedMesh
from analyzer.sim.scenario import Scenario
from analyzer.store.null import NullStore
from analyzer.traffic.memory import MemoryRouter
from analyzer.workloads.memory import MemoryScaler

if TYPE_CHECKING:
    from analyzer.kube.lease import LeaseElector


@dataclass(frozen=True)
class Settings:
    """Process settings: what is not in a rollout spec (where the store is, URL overrides)."""

    db: str | None = None  # SQLAlchemy URL of the history store; None keeps no history
    prometheus_url: str | None = None  # overrides sources.metrics.url
    jaeger_url: str | None = None  # overrides sources.traces.url
    notifications: tuple[Notification, ...] = ()  # sent for every rollout, beside the spec's own
    report_base_url: str | None = None  # where the service serves /v1/rollouts/{id}/report, for links
    allowed_load_hosts: tuple[str, ...] = ()  # hosts a spec's load may target besides the rollout's own host
    max_load_rps: float = 100.0  # cap on any spec's load rate
    # The cluster whose VirtualServices, Deployments and Events a rollout drives (none: routes stay in memory).
    kubeconfig: str | None = None
    kube_context: str | None = None
    in_cluster: bool = False  # the pod's service account (`serve` in a cluster)

    @property
    def cluster(self) -> bool:
        return self.in_cluster or self.kubeconfig is not None or self.kube_context is not None


@dataclass(frozen=True)
class SimulatedRig:
    """The adapters of a rollout on the simulated mesh, with the parts tests and reports look at."""

    adapters: Adapters
    mesh: SimulatedMesh
    router: TrafficRouter
    clock: VirtualClock


@dataclass(frozen=True)
class ClusterAdapters:
    """The Kubernetes side: the Istio router, the Deployment scaler and the Event notifier, on one ApiClient."""

    router: TrafficRouter
    scaler: Scaler
    notifier: Notifier


def cluster(settings: Settings) -> ClusterAdapters:
    """Raises KubeConfigError (a UserError: one clear line) when the cluster or Istio cannot be reached."""
    import os
    import socket

    from analyzer.kube.client import KubeSettings, api_client, istio_version
    from analyzer.notify.kube_events import KubeEventNotifier
    from analyzer.traffic.istio import IstioRouter
    from analyzer.workloads.kubernetes import DeploymentScaler

    kube = KubeSettings(kubeconfig=settings.kubeconfig, context=settings.kube_context,
                        in_cluster=settings.in_cluster)
    api = api_client(kube)
    version = istio_version(api)  # discovered once; also proves the cluster answers before a rollout starts
    instance = os.environ.get("POD_NAME") or socket.gethostname()
    return ClusterAdapters(
        router=IstioRouter(api, version=version, timeout=kube.timeout),
        scaler=DeploymentScaler(api, timeout=kube.timeout),
        notifier=KubeEventNotifier(api, version=version, instance=instance, timeout=kube.timeout),
    )


def open_store(url: str | None, *, clock: Clock | None = None) -> Store:
    if url is None:
        return NullStore()
    from analyzer.store.sql import SqlStore

    return SqlStore(url, clock=clock)


def leader_elector(settings: Settings, *, namespace: str, name: str = "canary-analyzer",
                   identity: str | None = None, **timing: float) -> LeaseElector:
    """The Lease election the daemon runs in a cluster: only the holder ticks rollouts."""
    from analyzer.kube.client import KubeSettings, api_client
    from analyzer.kube.lease import LeaseElector

    kube = KubeSettings(kubeconfig=settings.kubeconfig, context=settings.kube_context, in_cluster=settings.in_cluster)
    return LeaseElector(api_client(kube), namespace=namespace, name=name, identity=identity,
                        **timing)  # type: ignore[arg-type]


def simulated(spec: RolloutSpec, scenario: Scenario, *, seed: int, store: Store | None = None,
              clock: VirtualClock | None = None, settings: Settings | None = None,
              cluster: ClusterAdapters | None = None) -> SimulatedRig:
    """The embedded default: a closed loop in which the mesh routes by the router the engine drives.

    With a cluster's adapters the rollout drives a real VirtualService (and Deployments, Events) while the
    metrics stay simulated (`demo --kubeconfig`).
    """
    clock = clock or VirtualClock(EPOCH)
    store = store or NullStore()
    router = cluster.router if cluster else MemoryRouter()
    mesh = SimulatedMesh(scenario, router, seed=seed, start=clock.now(),  # type: ignore[arg-type]
                         edges=spec.analysis.bucket_edges)
    load = None
    if spec.load is not None:
        from analyzer.sim.load import SimulatedLoad

        load = SimulatedLoad(mesh, _checked_load(spec, spec.load, settings or Settings(), simulated=True))
    extra = (cluster.notifier,) if cluster else ()
    adapters = Adapters(metrics=mesh, router=router, scaler=cluster.scaler if cluster else MemoryScaler(),
                        notifier=notifier(spec, settings, store, extra=extra), store=store, clock=clock,
                        traces=_simulated_traces(spec, scenario, mesh, seed), load=load, hooks=hook_runner(spec))
    return SimulatedRig(adapters, mesh, router, clock)


def _simulated_traces(spec: RolloutSpec, scenario: Scenario, mesh: SimulatedMesh, seed: int) -> TraceSource | None:
    """Simulated traces when the scenario describes them or the spec asks for them."""
    if scenario.traces is None and spec.sources.traces.type != "simulated":
        return None
    from analyzer.sim.traces import SimulatedTraceSource, trace_scenario

    t = spec.target
    source = SimulatedTraceSource(trace_scenario(scenario.traces or "trace-healthy"), seed=seed + 7919,
                                  canary_subset=t.canary.subset, t0=mesh.t0,
                                  revisions={s.subset: s.label_value for s in (t.baseline, t.canary)})
    mesh.trace_sink = source
    return source


def with_overrides(spec: RolloutSpec, settings: Settings) -> RolloutSpec:
    """The spec with the settings' URL overrides applied to its sources."""
    sources = spec.sources
    if settings.prometheus_url is not None:
        metrics = sources.metrics if isinstance(sources.metrics, PrometheusSource) else PrometheusSource()
        sources = sources.model_copy(update={"metrics": metrics.model_copy(update={"url": settings.prometheus_url})})
    if settings.jaeger_url is not None:
        traces = sources.traces if isinstance(sources.traces, JaegerSource) else JaegerSource()
        sources = sources.model_copy(update={"traces": traces.model_copy(update={"url": settings.jaeger_url})})
    return spec if sources is spec.sources else spec.model_copy(update={"sources": sources})


def metric_source(spec: RolloutSpec) -> MetricSource:
    """The spec's metric source outside the simulator (`judge`, `run`, `serve`)."""
    config = spec.sources.metrics
    if not isinstance(config, PrometheusSource):
        raise SpecError(f"sources.metrics.type: {config.type!r} needs the simulated mesh (demo, simulate); "
                        "a live rollout reads Prometheus (set type: prometheus with its url)")
    from analyzer.sources.prometheus.source import PrometheusMetricSource

    return PrometheusMetricSource(config)


def trace_source(spec: RolloutSpec) -> TraceSource | None:
    """The spec's trace source outside the simulator: Jaeger, or none."""
    config = spec.sources.traces
    if isinstance(config, JaegerSource):
        from analyzer.sources.jaeger.source import JaegerTraceSource

        return JaegerTraceSource(config)
    return None


def live(spec: RolloutSpec, *, store: Store, clock: Clock | None = None, settings: Settings | None = None) -> Adapters:
    """Adapters for a rollout on real telemetry; traffic stays in memory unless the settings name a cluster."""
    kube = cluster(settings) if settings is not None and settings.cluster else None
    return Adapters(metrics=metric_source(spec), router=kube.router if kube else MemoryRouter(),
                    scaler=kube.scaler if kube else MemoryScaler(),
                    notifier=notifier(spec, settings, store, extra=(kube.notifier,) if kube else ()), store=store,
                    clock=clock or WallClock(), traces=trace_source(spec),
                    load=load_generator(spec, settings or Settings()), hooks=hook_runner(spec))


def hook_runner(spec: RolloutSpec) -> HookRunner | None:
    """Gate hooks over HTTP with Flagger's contract, when the spec has any."""
    if not any(h.type != "event" for h in spec.hooks):
        return None
    from analyzer.hooks.http import HttpHooks

    return HttpHooks()


def load_generator(spec: RolloutSpec, settings: Settings) -> LoadGenerator | None:
    """The spec's HTTP load, aimed only at the rollout's own host (or the settings' allowed hosts)."""
    if spec.load is None:
        return None
    from analyzer.load.generator import HttpLoadGenerator

    rps = _checked_load(spec, spec.load, settings, simulated=False)
    return HttpLoadGenerator(spec.load, spec.load.target_url(spec.target), rps=rps)


def _checked_load(spec: RolloutSpec, load: Load, settings: Settings, *, simulated: bool) -> float:
    """The load's rate after the safety checks: its target must be the rollout's host, and the rate is capped."""
    if load.rps > settings.max_load_rps:
        raise SpecError(f"load.rps: {load.rps:g} is above this service's limit of {settings.max_load_rps:g} rps")
    if simulated:
        return load.rps
    url = load.target_url(spec.target)
    parts = urlsplit(url)
    t = spec.target
    own = {t.host, *(f"{t.host}.{t.namespace}{suffix}" for suffix in ("", ".svc", ".svc.cluster.local"))}
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SpecError(f"load.url: {url!r} is not an http(s) URL")
    if parts.hostname not in own | set(settings.allowed_load_hosts):
        raise SpecError(f"load.url: host {parts.hostname!r} is not the rollout's host {t.host!r} "
                        f"(nor one the service settings allow); load may only target the service under test")
    return load.rps


def notifier(spec: RolloutSpec, settings: Settings | None, store: Store, *,
             extra: tuple[Notifier, ...] = ()) -> Notifier:
    """The log, plus every chat or webhook target of the process settings and of the spec, plus `extra`
    (the cluster's Kubernetes Events)."""
    settings = settings or Settings()
    targets = [(f"settings.notifications[{i}]", n) for i, n in enumerate(settings.notifications)]
    targets += [(f"notifications[{i}]", n) for i, n in enumerate(spec.notifications)]
    event_hooks = spec.hooks_of("event")
    if not targets and not event_hooks:
        return FanOut([LogNotifier(), *extra]) if extra else LogNotifier()

    def record(rollout: str, tick: int, why: str) -> None:
        store.record_event(rollout, tick, Event.NOTIFY_FAILED, why)

    delivery = Delivery(on_failure=record)
    sinks: list[Notifier] = [LogNotifier(), *extra]
    sinks += [WebhookNotifier(n.type, _webhook_url(n, where), delivery, events=n.events,
                              report_base_url=settings.report_base_url) for where, n in targets]
    if event_hooks:
        from analyzer.hooks.http import EventHookNotifier

        sinks.append(EventHookNotifier(event_hooks, delivery))
    return FanOut(sinks, [delivery])


_HTTP_URL = re.compile(r"^https?://[^\s/]+\S*$")


def _webhook_url(n: Notification, where: str) -> str:
    """Read the URL where the spec says it is; the spec itself never holds it."""
    if n.url_env is not None:
        url = os.environ.get(n.url_env, "").strip()
        if not url:
            raise SpecError(f"{where}.urlEnv: environment variable {n.url_env!r} is not set")
        origin = f"{where}.urlEnv ({n.url_env})"
    else:
        assert n.url_file is not None
        try:
            url = Path(n.url_file).read_text().strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise SpecError(f"{where}.urlFile: cannot read {n.url_file!r}: {exc}") from None
        origin = f"{where}.urlFile ({n.url_file})"
    if not _HTTP_URL.match(url):
        raise SpecError(f"{origin}: does not hold an http(s) URL")  # the value may be a secret: not echoed
    return url


def close(adapters: Adapters) -> None:
    """Stop load and flush what the adapters still hold (queued notifications) at the end of a command."""
    for part in (adapters.load, adapters.notifier, adapters.hooks):
        close_part = getattr(part, "close", None)
        if close_part is not None:
            close_part()
