"""A small Kubernetes API server for tests, on the standard library's threading HTTP server.

The real `kubernetes` client talks HTTP to it (no monkeypatching). What it emulates, and why it is ours and
not kmock: ../shared/design/kubernetes-testing.md. In short: discovery (with the trailing-slash paths the
client asks for), one resourceVersion counter, create (201, generateName), get, list (equality label
selectors), PUT, merge patch and JSON patch (`test` failures answer 422), 409 on a stale resourceVersion,
the Deployment `scale` subresource, Events and Leases, `managedFields` managers, validators and fault hooks
that run before anything is stored, and a request log.

Every VirtualService and DestinationRule write is checked against the OpenAPI schema of the real CRD
(../shared/fixtures/istio/crds-networking.yaml) plus our own rule: weights are integers summing to 100.
"""

from __future__ import annotations

import copy
import json
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import jsonpatch
import jsonschema
import yaml

_CANDIDATES = (
    Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "istio",  # CI: shared/ beside the clone
    Path("/work/shared/fixtures/istio"),
)
FIXTURES = next((p for p in _CANDIDATES if (p / "crds-networking.yaml").is_file()), _CANDIDATES[0])
ISTIO = "networking.istio.io"
ISTIO_VERSIONS = ("v1", "v1beta1", "v1alpha3")


@dataclass(frozen=True)
class Kind:
    group: str  # "" for the core group
    plural: str
    kind: str
    versions: tuple[str, ...]
    namespaced: bool = True
    verbs: tuple[str, ...] = ("create", "delete", "get", "list", "patch", "update", "watch")


KINDS: tuple[Kind, ...] = (
    Kind("", "pods", "Pod", ("v1",)),
    Kind("", "events", "Event", ("v1",)),
    Kind("", "namespaces", "Namespace", ("v1",), namespaced=False),
    Kind("apps", "deployments", "Deployment", ("v1",)),
    Kind("coordination.k8s.io", "leases", "Lease", ("v1",)),
    Kind(ISTIO, "virtualservices", "VirtualService", ISTIO_VERSIONS),
    Kind(ISTIO, "destinationrules", "DestinationRule", ISTIO_VERSIONS),
)


@dataclass
class Request:
    """One request as the server saw it (the request log)."""

    method: str
    path: str
    query: dict[str, str]
    content_type: str | None
    user_agent: str | None
    body: Any
    group: str | None = None
    version: str | None = None
    plural: str | None = None
    namespace: str | None = None
    name: str | None = None
    subresource: str | None = None
    status: int = 0

    @property
    def verb(self) -> str | None:
        """The RBAC verb this request needs (None for discovery)."""
        if self.plural is None:
            return None
        if self.method == "GET":
            return "get" if self.name else ("watch" if self.query.get("watch") in ("1", "true") else "list")
        return {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(self.method)

    @property
    def resource(self) -> str | None:
        """RBAC resource name, with the subresource (`deployments/scale`)."""
        if self.plural is None:
            return None
        return f"{self.plural}/{self.subresource}" if self.subresource else self.plural


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str, causes: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.code, self.reason, self.message, self.causes = code, reason, message, causes or []

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                               "message": self.message, "reason": self.reason, "code": self.code}
        if self.causes:
            out["details"] = {"causes": self.causes}
        return out


Fault = Callable[[Request], "tuple[int, str] | None"]
Validator = Callable[[Kind, str, dict], list[str]]


@cache
def crd_validators() -> dict[tuple[str, str], jsonschema.Draft7Validator]:
    """(plural, version) -> a validator for the CRD's openAPIV3Schema of that served version."""
    out = {}
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the CRDs are 0.5 MB of YAML
    for doc in yaml.load_all((FIXTURES / "crds-networking.yaml").read_text(), Loader=loader):
        if not doc:
            continue
        plural = doc["spec"]["names"]["plural"]
        for v in doc["spec"]["versions"]:
            out[(plural, v["name"])] = jsonschema.Draft7Validator(v["schema"]["openAPIV3Schema"])
    return out


def crd_schema_errors(kind: Kind, version: str, obj: dict) -> list[str]:
    if kind.group != ISTIO:
        return []
    validator = crd_validators()[(kind.plural, version)]
    return [f"{'.'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}"
            for e in validator.iter_errors(obj)]


def weights_sum_to_100(kind: Kind, version: str, obj: dict) -> list[str]:
    """Our own rule (formats.md §2.3): where weights are given, they are integers summing to 100."""
    if kind.plural != "virtualservices":
        return []
    errors = []
    for i, route in enumerate(obj.get("spec", {}).get("http") or []):
        dests = route.get("route") or []
        weights = [d.get("weight") for d in dests]
        if all(w is None for w in weights) and len(dests) <= 1:
            continue
        if any(type(w) is not int for w in weights):
            errors.append(f"spec.http[{i}].route: weights {weights} are not all integers")
        elif sum(weights) != 100:
            errors.append(f"spec.http[{i}].route: weights {weights} sum to {sum(weights)}, not 100")
    return errors


def _match_selector(labels: dict[str, str], selector: str) -> bool:
    """Equality-based selectors: a=b, a==b, a!=b, a, !a. Set-based selectors match nothing."""
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if " in " in term or " notin " in term or "(" in term:
            return False
        if "!=" in term:
            k, v = term.split("!=", 1)
            if labels.get(k.strip()) == v.strip():
                return False
        elif "=" in term:
            k, v = term.replace("==", "=").split("=", 1)
            if labels.get(k.strip()) != v.strip():
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def _merge(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = _merge(out.get(k), v)
    return out


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class FakeKubeApi:
    """Start with `with FakeKubeApi() as api:`; `api.url` is http://127.0.0.1:PORT."""

    def __init__(self, *, istio_versions: Iterable[str] = ISTIO_VERSIONS, kubelet: bool = True) -> None:
        self.istio_versions = tuple(istio_versions)
        self.kubelet = kubelet  # Deployments get ready Pods matching their replicas
        self.objects: dict[tuple[str, str, str, str], dict] = {}  # (group, plural, namespace, name)
        self.history: dict[tuple[str, str, str, str], list[dict]] = {}  # every stored state, in order
        self.log: list[Request] = []
        self.faults: list[Fault] = []
        self.validators: list[Validator] = [crd_schema_errors, weights_sum_to_100]
        self.rejected: list[tuple[str, list[str]]] = []  # writes a validator refused
        self._rv = 0
        self._lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None

    # ---- lifecycle ----

    def __enter__(self) -> FakeKubeApi:
        fake = self

        class Handler(_Handler):
            api = fake

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # ---- seeding and inspection (direct, not through HTTP) ----

    def kind(self, group: str, plural: str) -> Kind:
        for k in KINDS:
            if k.group == group and k.plural == plural:
                return k
        raise KeyError((group, plural))

    def seed(self, obj: dict, namespace: str | None = None) -> dict:
        """Store an object as if created (validated like any write). Returns the stored copy."""
        group, _, version = obj["apiVersion"].rpartition("/")
        kind = next(k for k in KINDS if k.group == group and k.kind == obj["kind"])
        ns = namespace or obj["metadata"].get("namespace", "default") if kind.namespaced else ""
        with self._lock:
            stored = self._create(kind, version, ns, copy.deepcopy(obj), manager="kubectl-client-side-apply")
        return copy.deepcopy(stored)

    def seed_yaml(self, path: Path | str, namespace: str, *, kinds: Iterable[str] | None = None) -> None:
        for doc in yaml.safe_load_all(Path(path).read_text()):
            if doc and (kinds is None or doc["kind"] in kinds):
                self.seed(doc, namespace)

    def get(self, group: str, plural: str, namespace: str, name: str) -> dict:
        with self._lock:
            return copy.deepcopy(self.objects[(group, plural, namespace, name)])

    def items(self, group: str, plural: str, namespace: str | None = None) -> list[dict]:
        with self._lock:
            return [copy.deepcopy(o) for (g, p, ns, _), o in self.objects.items()
                    if g == group and p == plural and (namespace is None or ns == namespace)]

    def versions_of(self, group: str, plural: str, namespace: str, name: str) -> list[dict]:
        with self._lock:
            return copy.deepcopy(self.history.get((group, plural, namespace, name), []))

    def write_direct(self, group: str, plural: str, namespace: str, name: str, mutate: Callable[[dict], None],
                     *, manager: str) -> dict:
        """A third party's write, applied at once (e.g. from a fault hook, between our read and our write)."""
        with self._lock:
            obj = copy.deepcopy(self.objects[(group, plural, namespace, name)])
            mutate(obj)
            kind = self.kind(group, plural)
            version = obj["apiVersion"].rpartition("/")[2]
            return self._update(kind, version, namespace, name, obj, manager, require_version=False)

    def fail_next(self, n: int, status: int, *, method: str | None = None, plural: str | None = None,
                  reason: str = "Conflict") -> None:
        """Answer `status` to the next n matching requests, before anything is stored."""
        left = [n]

        def fault(req: Request) -> tuple[int, str] | None:
            if left[0] <= 0 or (method and req.method != method) or (plural and req.plural != plural):
                return None
            left[0] -= 1
            return status, reason

        self.faults.append(fault)

    def requests(self, *, method: str | None = None, plural: str | None = None) -> list[Request]:
        with self._lock:
            return [r for r in self.log if (method is None or r.method == method)
                    and (plural is None or r.plural == plural)]

    # ---- the store; callers hold the lock ----

    def _bump(self) -> str:
        self._rv += 1
        return str(self._rv)

    def _validate(self, kind: Kind, version: str, obj: dict) -> None:
        errors = [e for v in self.validators for e in v(kind, version, obj)]
        if errors:
            self.rejected.append((kind.plural, errors))
            name = obj.get("metadata", {}).get("name", "")
            raise ApiError(422, "Invalid", f'{kind.kind} "{name}" is invalid: ' + "; ".join(errors),
                           [{"message": e} for e in errors])

    def _managed(self, obj: dict, manager: str, operation: str, version: str, group: str) -> None:
        # The latest writer goes last; the router reads the last entry as "who changed it".
        entries = [e for e in obj["metadata"].get("managedFields", []) if e.get("manager") != manager]
        entries.append({"manager": manager, "operation": operation, "time": _now(), "fieldsType": "FieldsV1",
                        "apiVersion": f"{group}/{version}" if group else version, "fieldsV1": {}})
        obj["metadata"]["managedFields"] = entries

    def _store(self, kind: Kind, ns: str, obj: dict) -> dict:
        key = (kind.group, kind.plural, ns, obj["metadata"]["name"])
        obj["metadata"]["resourceVersion"] = self._bump()
        self.objects[key] = obj
        self.history.setdefault(key, []).append(copy.deepcopy(obj))
        if self.kubelet and kind.plural == "deployments":
            self._reconcile_pods(ns, obj)
        return obj

    def _create(self, kind: Kind, version: str, ns: str, obj: dict, manager: str) -> dict:
        meta = obj.setdefault("metadata", {})
        if not meta.get("name"):
            if not meta.get("generateName"):
                raise ApiError(422, "Invalid", "metadata.name: Required value: name or generateName is required")
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        if (kind.group, kind.plural, ns, meta["name"]) in self.objects:
            raise ApiError(409, "AlreadyExists", f'{kind.plural} "{meta["name"]}" already exists')
        if kind.namespaced:
            meta["namespace"] = ns
        meta.pop("resourceVersion", None)
        meta.update(uid=str(uuid.uuid4()), creationTimestamp=_now(), generation=1)
        obj["apiVersion"] = f"{kind.group}/{version}" if kind.group else version
        obj["kind"] = kind.kind
        self._managed(obj, manager, "Update", version, kind.group)
        self._validate(kind, version, obj)
        return self._store(kind, ns, obj)

    def _update(self, kind: Kind, version: str, ns: str, name: str, new: dict, manager: str,
                *, require_version: bool) -> dict:
        key = (kind.group, kind.plural, ns, name)
        old = self.objects.get(key)
        if old is None:
            raise ApiError(404, "NotFound", f'{kind.plural}.{kind.group} "{name}" not found')
        sent = new.get("metadata", {}).get("resourceVersion")
        if sent is None and require_version:
            raise ApiError(422, "Invalid", "metadata.resourceVersion: Invalid value: 0x0: must be specified "
                                           "for an update")
        if sent is not None and sent != old["metadata"]["resourceVersion"]:
            raise ApiError(409, "Conflict", f'Operation cannot be fulfilled on {kind.plural}.{kind.group} "{name}": '
                                            "the object has been modified; please apply your changes to the "
                                            "latest version and try again")
        new = copy.deepcopy(new)
        meta = new.setdefault("metadata", {})
        for k in ("uid", "creationTimestamp", "namespace", "name", "managedFields"):
            if k in old["metadata"]:
                meta[k] = copy.deepcopy(old["metadata"][k])
        new["apiVersion"] = f"{kind.group}/{version}" if kind.group else version
        new["kind"] = kind.kind
        same = all(new.get(k) == old.get(k) for k in set(new) | set(old) if k != "metadata")
        if same and meta.get("annotations") == old["metadata"].get("annotations") \
                and meta.get("labels") == old["metadata"].get("labels"):
            return copy.deepcopy(old)  # a no-op write does not bump the version
        meta["generation"] = old["metadata"].get("generation", 1) + (new.get("spec") != old.get("spec"))
        self._managed(new, manager, "Update", version, kind.group)
        self._validate(kind, version, new)
        return self._store(kind, ns, new)

    def _patch(self, old: dict, content_type: str, body: Any, group: str) -> dict:
        if content_type.startswith("application/json-patch+json"):
            if not isinstance(body, list):
                raise ApiError(400, "BadRequest", "a JSON patch is a list of operations")
            try:
                return jsonpatch.apply_patch(old, body)
            except jsonpatch.JsonPatchTestFailed as exc:
                raise ApiError(422, "Invalid", f"the server rejected our request due to an error in our request: "
                                               f"{exc}") from None
            except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
                raise ApiError(422, "Invalid", f"cannot apply the JSON patch: {exc}") from None
        if content_type.startswith("application/strategic-merge-patch+json"):
            if group not in ("", "apps", "coordination.k8s.io"):
                raise ApiError(415, "UnsupportedMediaType", "strategic merge patch is not supported for custom "
                                                            "resources")
            return _merge(old, body)
        if content_type.startswith("application/merge-patch+json"):
            return _merge(old, body)
        raise ApiError(415, "UnsupportedMediaType", f"the body of the request was in an unknown format: "
                                                    f"{content_type}")

    def _scale_of(self, dep: dict) -> dict:
        labels = dep.get("spec", {}).get("selector", {}).get("matchLabels", {})
        replicas = dep.get("spec", {}).get("replicas", 1)
        return {"kind": "Scale", "apiVersion": "autoscaling/v1",
                "metadata": {k: dep["metadata"][k] for k in ("name", "namespace", "uid", "resourceVersion",
                                                              "creationTimestamp") if k in dep["metadata"]},
                "spec": {"replicas": replicas},
                "status": {"replicas": replicas, "selector": ",".join(f"{k}={v}" for k, v in labels.items())}}

    def _reconcile_pods(self, ns: str, dep: dict) -> None:
        """The part of the controllers and the kubelet we need: N ready Pods carrying the template's labels."""
        name = dep["metadata"]["name"]
        want = dep.get("spec", {}).get("replicas", 1)
        labels = dep.get("spec", {}).get("template", {}).get("metadata", {}).get("labels", {})
        mine = sorted(k for k, o in self.objects.items() if k[1] == "pods" and k[2] == ns
                      and o["metadata"].get("annotations", {}).get("fake/owner") == name)
        for key in mine[want:]:
            del self.objects[key]
        for i in range(len(mine), want):
            pod = {"apiVersion": "v1", "kind": "Pod",
                   "metadata": {"name": f"{name}-{uuid.uuid4().hex[:5]}-{i}", "namespace": ns,
                                "labels": dict(labels), "annotations": {"fake/owner": name},
                                "resourceVersion": self._bump(), "uid": str(uuid.uuid4())},
                   "spec": {"containers": [{"name": "app", "image": "example"}]},
                   "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}
            self.objects[("", "pods", ns, pod["metadata"]["name"])] = pod

    # ---- request handling ----

    def handle(self, req: Request) -> tuple[int, Any]:
        with self._lock:
            self.log.append(req)
            self._parse(req)
            for fault in self.faults:
                hit = fault(req)
                if hit is not None:
                    code, reason = hit
                    return code, ApiError(code, reason, f"injected {code} {reason}").status()
            try:
                return self._route(req)
            except ApiError as exc:
                return exc.code, exc.status()

    @staticmethod
    def _parse(req: Request) -> None:
        """Fill in the resource a request is about (None for discovery), so faults can match on it."""
        parts = [unquote(p) for p in req.path.strip("/").split("/") if p]
        if parts[:2] == ["api", "v1"]:
            group, version, rest = "", "v1", parts[2:]
        elif parts[:1] == ["apis"] and len(parts) >= 3:
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            return
        ns = ""
        if rest[:1] == ["namespaces"] and len(rest) >= 3:
            ns, rest = rest[1], rest[2:]
        if rest:
            req.group, req.version, req.namespace = group, version, ns
            req.plural, req.name = rest[0], rest[1] if len(rest) > 1 else None
            req.subresource = rest[2] if len(rest) > 2 else None

    def _route(self, req: Request) -> tuple[int, Any]:
        parts = [unquote(p) for p in req.path.strip("/").split("/") if p]
        if req.method == "GET":
            discovery = self._discovery(parts)
            if discovery is not None:
                return 200, discovery
        if req.plural is None:
            raise ApiError(404, "NotFound", f"the server could not find the requested resource ({req.path})")
        group, version, ns = req.group or "", req.version or "", req.namespace or ""
        plural, name, sub = req.plural, req.name, req.subresource
        try:
            kind = self.kind(group, plural)
        except KeyError:
            raise ApiError(404, "NotFound", f"the server could not find the requested resource ({req.path})") \
                from None
        if version not in self._served(kind):
            raise ApiError(404, "NotFound", f"the server could not find the requested resource ({req.path})")
        manager = req.query.get("fieldManager") or (req.user_agent or "unknown").split("/")[0]
        if sub is not None and not (sub == "scale" and plural == "deployments"):
            raise ApiError(404, "NotFound", f"subresource {sub} not served")
        key = (group, plural, ns, name or "")

        def current() -> dict:
            if key not in self.objects:
                raise ApiError(404, "NotFound", f'{plural}.{group} "{name}" not found'.replace(". ", " "))
            obj = copy.deepcopy(self.objects[key])
            if group:
                obj["apiVersion"] = f"{group}/{version}"
            return obj

        if req.method == "GET" and name is None:
            selector = req.query.get("labelSelector", "")
            items = [self._view(o, group, version) for (g, p, n, _), o in sorted(self.objects.items())
                     if g == group and p == plural and (not ns or n == ns)
                     and _match_selector(o["metadata"].get("labels", {}), selector)]
            return 200, {"apiVersion": f"{group}/{version}" if group else version, "kind": f"{kind.kind}List",
                         "metadata": {"resourceVersion": str(self._rv)}, "items": items}
        if req.method == "GET":
            return 200, self._scale_of(current()) if sub else current()
        if req.method == "POST" and name is None:
            return 201, self._create(kind, version, ns, copy.deepcopy(req.body), manager)
        if req.method == "DELETE" and name is not None:
            obj = current()
            del self.objects[key]
            self._bump()
            return 200, obj
        if name is None or req.method not in ("PUT", "PATCH"):
            raise ApiError(405, "MethodNotAllowed", f"{req.method} is not allowed on {req.path}")
        if sub == "scale":
            return 200, self._write_scale(kind, version, ns, name, req, manager)
        if req.method == "PUT":
            return 200, self._update(kind, version, ns, name, req.body, manager, require_version=bool(group) and
                                     group not in ("apps", "coordination.k8s.io"))
        obj = current()
        patched = self._patch(obj, req.content_type or "", req.body, group)
        return 200, self._update(kind, version, ns, name, patched, manager, require_version=False)

    def _write_scale(self, kind: Kind, version: str, ns: str, name: str, req: Request, manager: str) -> dict:
        key = (kind.group, kind.plural, ns, name)
        if key not in self.objects:
            raise ApiError(404, "NotFound", f'deployments.apps "{name}" not found')
        dep = copy.deepcopy(self.objects[key])
        scale = self._scale_of(dep)
        new = req.body if req.method == "PUT" else self._patch(scale, req.content_type or "", req.body, "apps")
        replicas = new.get("spec", {}).get("replicas")
        if type(replicas) is not int or replicas < 0:
            raise ApiError(422, "Invalid", f"spec.replicas: Invalid value: {replicas!r}: must be a non-negative "
                                           "integer")
        dep["spec"]["replicas"] = replicas
        dep["metadata"]["resourceVersion"] = new.get("metadata", {}).get("resourceVersion")
        stored = self._update(kind, version, ns, name, dep, manager, require_version=False)
        return self._scale_of(stored)

    def _view(self, obj: dict, group: str, version: str) -> dict:
        obj = copy.deepcopy(obj)
        if group:
            obj["apiVersion"] = f"{group}/{version}"
        return obj

    def _served(self, kind: Kind) -> tuple[str, ...]:
        return self.istio_versions if kind.group == ISTIO else kind.versions

    def _resource_list(self, group: str, version: str) -> dict | None:
        kinds = [k for k in KINDS if k.group == group and version in self._served(k)]
        if not kinds:
            return None
        resources = [{"name": k.plural, "singularName": k.kind.lower(), "namespaced": k.namespaced, "kind": k.kind,
                      "verbs": list(k.verbs)} for k in kinds]
        if group == "apps":
            resources.append({"name": "deployments/scale", "singularName": "", "namespaced": True,
                              "group": "autoscaling", "version": "v1", "kind": "Scale",
                              "verbs": ["get", "patch", "update"]})
        return {"kind": "APIResourceList", "apiVersion": "v1",
                "groupVersion": f"{group}/{version}" if group else version, "resources": resources}

    def _group(self, group: str) -> dict | None:
        versions = [v for v in ((*self.istio_versions,) if group == ISTIO else
                                next((k.versions for k in KINDS if k.group == group), ()))]
        if not versions:
            return None
        entries = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
        return {"kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": entries,
                "preferredVersion": entries[0]}

    def _discovery(self, parts: list[str]) -> dict | None:
        if parts == ["version"]:
            return {"major": "1", "minor": "34", "gitVersion": "v1.34.0", "platform": "linux/amd64"}
        if parts == ["api"]:
            return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
        if parts == ["api", "v1"]:
            return self._resource_list("", "v1")
        if parts == ["apis"]:
            groups = [g for g in (self._group(name) for name in sorted({k.group for k in KINDS if k.group})) if g]
            return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}
        if len(parts) == 2 and parts[0] == "apis":
            found = self._group(parts[1])
            if found is None:
                raise ApiError(404, "NotFound", f"group {parts[1]} not served")
            return found
        if len(parts) == 3 and parts[0] == "apis":
            found = self._resource_list(parts[1], parts[2])
            if found is None:
                raise ApiError(404, "NotFound", f"{parts[1]}/{parts[2]} not served")
            return found
        return None


class _Handler(BaseHTTPRequestHandler):
    api: FakeKubeApi
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # without it each answer waits ~40 ms for a delayed ACK

    def _serve(self) -> None:
        split = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            self._send(400, ApiError(400, "BadRequest", "body is not JSON").status())
            return
        query = {k: v[-1] for k, v in parse_qs(split.query).items()}
        req = Request(self.command, split.path, query, self.headers.get("Content-Type"),
                      self.headers.get("User-Agent"), body)
        status, payload = self.api.handle(req)
        req.status = status
        self._send(status, payload)

    def _send(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

