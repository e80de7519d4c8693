"""deploy/: every manifest validates (kubernetes-validate for Kubernetes kinds, the real CRD schema for Istio's),
the RBAC grants exactly the calls the code makes, and the image is slim, non-root and pinned."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from analyzer.app.simulation import run_rollout
from analyzer.kube.client import KubeSettings, api_client
from analyzer.kube.lease import LeaseElector
from analyzer.sim.scenario import load_scenario
from tests.fakes.kube_api import KINDS, crd_schema_errors
from tests.kube_cluster import bookinfo, reviews_spec

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
MANIFESTS = DEPLOY / "kubernetes"
KUBERNETES_VERSION = "1.34.0"  # a current release; kubernetes-validate ships its schemas


def _docs() -> list[tuple[str, dict]]:
    out = []
    for path in sorted(MANIFESTS.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            out += [(path.name, d) for d in yaml.safe_load_all(path.read_text()) if d]
    return out


def _by_kind(kind: str) -> list[dict]:
    return [d for _, d in _docs() if d["kind"] == kind]


@pytest.mark.parametrize(("name", "doc"), _docs(), ids=lambda x: x if isinstance(x, str) else x["kind"])
def test_every_manifest_validates(name: str, doc: dict) -> None:
    if doc["apiVersion"].startswith("networking.istio.io/"):
        version = doc["apiVersion"].rpartition("/")[2]
        if doc["kind"] == "VirtualService":
            kind = next(k for k in KINDS if k.kind == "VirtualService")
            assert crd_schema_errors(kind, version, doc) == []
        else:  # Gateway: its CRD is not among the fixtures; check the fields the ingress gateway needs
            assert doc["kind"] == "Gateway" and doc["spec"]["selector"] == {"istio": "ingressgateway"}
            for server in doc["spec"]["servers"]:
                assert set(server) == {"port", "hosts"} and server["hosts"]
                assert set(server["port"]) == {"number", "name", "protocol"}
        return
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_the_validator_rejects_a_broken_manifest() -> None:
    """The check above can fail: a misspelled field and a wrong type are refused."""
    deployment = _by_kind("Deployment")[0]
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = 3
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["replica"] = 2
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())
    files = {p.name for p in MANIFESTS.glob("*.yaml")} - {"kustomization.yaml"}
    assert sorted(kustomization["resources"]) == sorted(files)
    assert kustomization["namespace"] == "canary-analyzer"
    kinds = {d["kind"] for _, d in _docs()}
    assert {"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "Deployment",
            "Service", "ConfigMap", "PodDisruptionBudget", "Gateway", "VirtualService"} <= kinds


def test_the_deployment_is_locked_down_probed_and_scraped() -> None:
    (dep,) = _by_kind("Deployment")
    pod = dep["spec"]["template"]
    spec = pod["spec"]
    (container,) = spec["containers"]
    assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] != 0
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert {"readinessProbe", "livenessProbe"} <= set(container)
    assert container["resources"]["requests"] and container["resources"]["limits"]
    notes = pod["metadata"]["annotations"]
    assert notes["prometheus.io/scrape"] == "true" and notes["prometheus.io/path"] == "/metrics"
    assert container["args"][0] == "serve"
    assert spec["serviceAccountName"] == _by_kind("ServiceAccount")[0]["metadata"]["name"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["tokens"]["secret"]["secretName"] == "canary-analyzer-tokens"
    assert volumes["specs"]["configMap"]["name"] == _by_kind("ConfigMap")[0]["metadata"]["name"]
    # Service, PDB and the gateway route all reach these pods.
    labels = pod["metadata"]["labels"]
    (svc,) = _by_kind("Service")
    assert svc["spec"]["selector"].items() <= labels.items()
    assert _by_kind("PodDisruptionBudget")[0]["spec"]["selector"]["matchLabels"].items() <= labels.items()
    (vs,) = _by_kind("VirtualService")
    dest = vs["spec"]["http"][0]["route"][0]["destination"]
    assert dest["host"].startswith(f"{svc['metadata']['name']}.{svc['metadata']['namespace']}.")
    assert dest["port"]["number"] == svc["spec"]["ports"][0]["port"]
    assert vs["spec"]["gateways"] == [_by_kind("Gateway")[0]["metadata"]["name"]]


def test_the_configmap_specs_validate() -> None:
    from analyzer.config import parse_spec

    for name, text in _by_kind("ConfigMap")[0]["data"].items():
        spec = parse_spec(yaml.safe_load(text), name)
        assert spec.name == name.removesuffix(".yaml")


def _granted() -> set[tuple[str, str, str]]:
    out = set()
    for role in _by_kind("ClusterRole") + _by_kind("Role"):
        for rule in role["rules"]:
            out |= {(g, r, v) for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}
    return out


def _called() -> set[tuple[str, str, str]]:
    """Every (apiGroup, resource, verb) the adapters call: a whole rollout with scaling and events, a rollback,
    the DestinationRule found by host, and leader election."""
    calls = set()
    scaled = {"strategy.scaling": {"totalReplicas": 3, "bakeTime": "1m"}}
    regression = load_scenario("error-regression")
    regression = regression.model_copy(
        update={"regression": regression.regression.model_copy(update={"error_ratio": 3.0})})
    runs = [(reviews_spec(**scaled), load_scenario("healthy"), 3),
            (reviews_spec(**scaled, **{"target.destinationRule": "reviews-by-host"}), regression, 1)]
    for spec, scenario, seed in runs:
        with bookinfo() as c:
            run_rollout(spec, scenario, seed=seed, cluster=c.adapters)
            calls |= {(r.group, r.resource, r.verb) for r in c.fake.log if r.plural}
            assert all(r.status < 400 or r.status == 404 for r in c.fake.log), [
                (r.method, r.path, r.status) for r in c.fake.log if r.status >= 400]
    with bookinfo() as c:
        elector = LeaseElector(api_client(KubeSettings(host=c.fake.url)), namespace="canary-analyzer",
                               lease_duration=2, renew_deadline=1.0, retry_period=0.2)
        elector.round()
        elector.round()
        elector.stop()
        calls |= {(r.group, r.resource, r.verb) for r in c.fake.log if r.plural}
    return calls


def test_rbac_grants_exactly_what_the_code_calls() -> None:
    called = _called()
    granted = _granted()
    assert called - granted == set(), "calls the RBAC does not allow"
    assert granted - called == set(), "grants no code uses"
    assert ("networking.istio.io", "virtualservices", "update") not in granted  # JSON patch, never PUT
    assert not any(r.startswith("deployments") and r != "deployments/scale" for _, r, _ in granted)


def test_the_image_is_slim_non_root_and_pinned() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    froms = re.findall(r"^FROM (\S+)", text, re.M)
    assert froms and all(re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+(?: AS \w+)?", f) or "slim" in f for f in froms)
    user = re.findall(r"^USER (\S+)", text, re.M)
    assert user and user[-1].split(":")[0] not in ("0", "root")
    assert 'ENTRYPOINT ["canary-analyzer"]' in text and re.search(r'^CMD \["serve"', text, re.M)
    lock = [line for line in (DEPLOY / "requirements.lock").read_text().splitlines()
            if line and not line.startswith("#")]
    assert all(re.fullmatch(r"[A-Za-z0-9_.-]+==[\w.]+", line) for line in lock), lock
    pinned = {re.sub(r"[-_.]+", "-", line.split("==")[0]).lower() for line in lock}
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for dep in [*project["dependencies"], *project["optional-dependencies"]["postgres"]]:
        name = re.sub(r"[-_.]+", "-", re.split(r"[<>=!~\[ ;]", dep, maxsplit=1)[0]).lower()
        assert name in pinned, f"{name} is not pinned in deploy/requirements.lock"


def test_every_dependency_has_an_upper_bound() -> None:
    """A new major release of a library or CLI (ruff included) must not change behaviour unseen."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    project = pyproject["project"]
    deps = [*project["dependencies"], *pyproject["build-system"]["requires"],
            *(d for group in project["optional-dependencies"].values() for d in group)]
    unbounded = [d for d in deps if "<" not in d.split(";")[0]]
    assert unbounded == []
