"""A Bookinfo namespace on the fake Kubernetes API server, and the adapters wired to it over HTTP."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client

from analyzer.app.wiring import ClusterAdapters
from analyzer.config import RolloutSpec, parse_spec
from analyzer.kube.client import KubeSettings, api_client
from analyzer.notify.kube_events import KubeEventNotifier
from analyzer.traffic.istio import IstioRouter
from analyzer.workloads.kubernetes import DeploymentScaler
from tests.fakes.kube_api import FIXTURES, ISTIO, FakeKubeApi

ROOT = Path(__file__).resolve().parents[1]
NS = "bookinfo"


def spec_data(**changes: Any) -> dict:
    """config/examples/reviews.yaml as data, with dotted-path changes: spec_data(**{"target.onDrift": "correct"})."""
    import yaml

    data = yaml.safe_load((ROOT / "config/examples/reviews.yaml").read_text())
    for path, value in changes.items():
        node = data
        *parents, last = path.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    return data


def reviews_spec(**changes: Any) -> RolloutSpec:
    return parse_spec(spec_data(**changes))


@dataclass
class Cluster:
    fake: FakeKubeApi
    api: client.ApiClient
    router: IstioRouter
    scaler: DeploymentScaler
    events: KubeEventNotifier

    @property
    def adapters(self) -> ClusterAdapters:
        return ClusterAdapters(self.router, self.scaler, self.events)

    def vs(self, name: str = "reviews") -> dict:
        return self.fake.get(ISTIO, "virtualservices", NS, name)

    def vs_history(self, name: str = "reviews") -> list[dict]:
        return self.fake.versions_of(ISTIO, "virtualservices", NS, name)

    def replicas(self, deployment: str) -> int:
        return self.fake.get("apps", "deployments", NS, deployment)["spec"]["replicas"]

    def replica_history(self, deployment: str) -> list[int]:
        out: list[int] = []
        for d in self.fake.versions_of("apps", "deployments", NS, deployment):
            if not out or out[-1] != d["spec"]["replicas"]:
                out.append(d["spec"]["replicas"])
        return out

    def event_list(self) -> list[dict]:
        return self.fake.items("", "events", NS)

    def other_client(self, agent: str) -> client.CustomObjectsApi:
        """A second writer (an operator's kubectl), with its own user agent: the managedFields manager."""
        api = api_client(KubeSettings(host=self.fake.url))
        api.user_agent = agent
        return client.CustomObjectsApi(api)


def reviews_vs(name: str = "virtual-service-all-v1.yaml") -> dict:
    import yaml

    for doc in yaml.safe_load_all((FIXTURES / name).read_text()):
        if doc and doc["metadata"]["name"] == "reviews":
            return copy.deepcopy(doc)
    raise KeyError(name)


@contextmanager
def bookinfo(*, vs: dict | None = None, istio_versions: tuple[str, ...] = ("v1", "v1beta1", "v1alpha3")
             ) -> Iterator[Cluster]:
    with FakeKubeApi(istio_versions=istio_versions) as fake:
        for doc in (vs or reviews_vs(),):
            doc = copy.deepcopy(doc)
            doc["apiVersion"] = f"{ISTIO}/{istio_versions[0]}"
            fake.seed(doc, NS)
        fake.seed_yaml(FIXTURES / "destination-rule-reviews.yaml", NS)
        fake.seed_yaml(FIXTURES / "bookinfo.yaml", NS, kinds=["Deployment"])
        api = api_client(KubeSettings(host=fake.url))
        yield Cluster(fake, api, IstioRouter(api, backoff=0.001), DeploymentScaler(api), KubeEventNotifier(api))


def canary_weights(history: list[dict], route_name: str | None = None, canary: str = "v2") -> list[int]:
    """The canary weight of each stored version of the VirtualService, repeats collapsed."""
    out: list[int] = []
    for vs in history:
        for route in vs["spec"].get("http", []):
            if route.get("name", "").endswith("-canary-header") or (route_name and route.get("name") != route_name):
                continue
            w = sum(d.get("weight", 0 if len(route["route"]) > 1 else 100) for d in route["route"]
                    if d["destination"].get("subset") == canary)
            if not out or out[-1] != w:
                out.append(w)
            break
    return out


def has_header_route(vs: dict) -> bool:
    return any(r.get("name", "").endswith("-canary-header") for r in vs["spec"].get("http", []))
