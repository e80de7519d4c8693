"""Istio traffic router: edits the user's own VirtualService through the kubernetes client (CustomObjectsApi).

Only the managed HTTP route (and the header route we insert ahead of it) is ever written; other routes,
matches, retries, timeouts and gateways stay as the user wrote them. Every write is one JSON patch that starts
with a `test` of the resourceVersion, so a concurrent edit is never overwritten blindly: on a conflict we re-read
and re-apply only while our route is still as we left it (formats.md §2; peers.md on how Flagger rewrites the
whole VirtualService and Argo edits only the named routes).
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from typing import Any

import structlog
from kubernetes import client
from kubernetes.client.rest import ApiException

from analyzer.config import RolloutSpec
from analyzer.errors import UserError
from analyzer.kube.client import FIELD_MANAGER, ISTIO_GROUP, istio_version
from analyzer.model import HeaderMatch, RouteDrift

PREFIX = "canary-analyzer.io/"
ORIGINAL = PREFIX + "original-route"  # the managed route before the rollout's first write (JSON)
WEIGHTS = PREFIX + "weights"  # the weights we wrote last (JSON): tells our own writes from a third party's
STATUS_KEYS = ("rollout", "phase", "step", "decision", "verdict")  # annotate(): canary-analyzer.io/<key>
FINAL_PHASES = {"Succeeded", "RolledBack", "Failed", "Aborted"}  # a new rollout records its own original
HEADER_SUFFIX = "-canary-header"

log = structlog.get_logger("analyzer.traffic.istio")

Ops = list[dict[str, Any]]


class RouteNotFound(UserError):
    """The VirtualService or its managed route is not there (or not one route can be told apart)."""


class SubsetCheckError(UserError):
    """A subset is missing from the DestinationRule, or its labels select no ready pod."""


class RouteConflict(Exception):
    """Our write kept conflicting with others' writes; the engine retries it at the next tick."""


class DriftDetected(Exception):
    """A conflicting write changed our route: we do not re-apply over it."""

    def __init__(self, drift: RouteDrift) -> None:
        super().__init__(drift.describe())
        self.drift = drift


def _pointer(*parts: object) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def _short(host: str, namespace: str) -> str:
    """Compare hosts as Istio resolves short names: `reviews` is reviews.<namespace>.svc.cluster.local."""
    parts = host.split(".")
    if len(parts) == 1:
        return f"{host}.{namespace}.svc.cluster.local"
    if len(parts) == 2:
        return f"{host}.svc.cluster.local"
    return host


class IstioRouter:
    """A `TrafficRouter` over a real VirtualService. One instance per process; thread-safe per call."""

    def __init__(self, api: client.ApiClient, *, version: str | None = None, timeout: float = 10.0,
                 max_conflicts: int = 8, backoff: float = 0.05) -> None:
        self.api = api
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)
        self.apps = client.AppsV1Api(api)
        self._version = version
        self.timeout = timeout
        self.max_conflicts = max_conflicts
        self.backoff = backoff
        self._checked: set[str] = set()  # rollouts whose subsets passed the check (DR + ready pods)

    # ---- reads ----

    @property
    def version(self) -> str:
        if self._version is None:
            self._version = istio_version(self.api)
        return self._version

    def _get(self, plural: str, namespace: str, name: str) -> dict:
        return self.custom.get_namespaced_custom_object(ISTIO_GROUP, self.version, namespace, plural, name,
                                                        _request_timeout=self.timeout)

    def virtual_service(self, spec: RolloutSpec) -> dict:
        t = spec.target
        try:
            return self._get("virtualservices", t.namespace, t.virtual_service)
        except ApiException as exc:
            if exc.status == 404:
                raise RouteNotFound(f"target.virtualService: {t.namespace}/{t.virtual_service} not found") \
                    from None
            raise

    def _header_name(self, spec: RolloutSpec) -> str:
        base = spec.target.route or "canary-analyzer"
        return base + HEADER_SUFFIX

    def _route_index(self, spec: RolloutSpec, vs: dict) -> int:
        """Index of the managed route in spec.http: by name, else the one route to exactly our two subsets."""
        t = spec.target
        http = vs.get("spec", {}).get("http") or []
        where = f"VirtualService {t.namespace}/{t.virtual_service}"
        if t.route:
            for i, route in enumerate(http):
                if route.get("name") == t.route:
                    return i
            names = [r.get("name") for r in http if r.get("name")]
            raise RouteNotFound(f"target.route: {t.route!r} is not an http route of {where} (routes: "
                                f"{', '.join(names) or 'none named'})")
        ours = {t.baseline.subset, t.canary.subset}
        host = _short(t.host, t.namespace)
        header = self._header_name(spec)
        found = []
        for i, route in enumerate(http):
            dests = [d.get("destination", {}) for d in route.get("route") or []]
            subsets = {d.get("subset") for d in dests}
            if route.get("name") == header or not dests:
                continue
            if all(_short(d.get("host", ""), t.namespace) == host for d in dests) and \
                    t.baseline.subset in subsets and subsets <= ours:
                found.append(i)
        if len(found) == 1:
            return found[0]
        if not found:
            raise RouteNotFound(f"target.route: no http route of {where} goes to host {t.host!r} subsets "
                                f"{t.baseline.subset!r} (and {t.canary.subset!r}); name the route in target.route")
        raise RouteNotFound(f"target.route: {len(found)} http routes of {where} go to {t.host!r} "
                            f"{t.baseline.subset!r}/{t.canary.subset!r} (indexes {found}); name one in target.route")

    @staticmethod
    def _weights_of(spec: RolloutSpec, route: dict) -> dict[str, int]:
        t = spec.target
        dests = route.get("route") or []
        out = {t.baseline.subset: 0, t.canary.subset: 0}
        for d in dests:
            subset = d.get("destination", {}).get("subset")
            weight = d.get("weight")
            out[subset] = out.get(subset, 0) + (100 if weight is None and len(dests) == 1 else int(weight or 0))
        return out

    def get_weights(self, spec: RolloutSpec) -> dict[str, int]:
        vs = self.virtual_service(spec)
        return self._weights_of(spec, vs["spec"]["http"][self._route_index(spec, vs)])

    def header_route(self, spec: RolloutSpec) -> HeaderMatch | None:
        vs = self.virtual_service(spec)
        name = self._header_name(spec)
        h = spec.strategy.header_phase
        for route in vs.get("spec", {}).get("http") or []:
            if route.get("name") == name:
                header = h.header if h else next(iter((route.get("match") or [{}])[0].get("headers", {})), "")
                cond = (route.get("match") or [{}])[0].get("headers", {}).get(header, {})
                kind, value = next(iter(cond.items()), ("exact", ""))
                return HeaderMatch(header=header, value=value, kind=kind)
        return None

    @staticmethod
    def _annotations(vs: dict) -> dict[str, str]:
        return vs.get("metadata", {}).get("annotations") or {}

    def _ours(self, vs: dict) -> dict[str, int] | None:
        raw = self._annotations(vs).get(WEIGHTS)
        try:
            return {str(k): int(v) for k, v in json.loads(raw).items()} if raw else None
        except (ValueError, AttributeError, TypeError):
            return None

    @staticmethod
    def changed_by(vs: dict, *, exclude: str = FIELD_MANAGER) -> str | None:
        """The most recent writer other than us, from managedFields (time, then list order)."""
        entries = [(e.get("time") or "", i, e.get("manager")) for i, e in
                   enumerate(vs.get("metadata", {}).get("managedFields") or []) if e.get("manager") != exclude]
        return max(entries)[2] if entries else None

    def _drift_in(self, spec: RolloutSpec, vs: dict) -> RouteDrift | None:
        ours = self._ours(vs)
        if ours is None:
            return None
        try:
            found = self._weights_of(spec, vs["spec"]["http"][self._route_index(spec, vs)])
        except RouteNotFound as exc:
            return RouteDrift(found={}, ours=ours, manager=self.changed_by(vs), detail=str(exc))
        if found == ours:
            return None
        return RouteDrift(found=found, ours=ours, manager=self.changed_by(vs),
                          detail=f"weights {_fmt(ours)} became {_fmt(found)}")

    def drift(self, spec: RolloutSpec) -> RouteDrift | None:
        return self._drift_in(spec, self.virtual_service(spec))

    # ---- subset check ----

    def check_subsets(self, spec: RolloutSpec, *, pods: bool = True) -> None:
        """Both subsets exist in the DestinationRule and (with `pods`) their labels select a ready pod."""
        t = spec.target
        dr = self._destination_rule(spec)
        subsets = {s.get("name"): s for s in dr.get("spec", {}).get("subsets") or []}
        where = f"DestinationRule {t.namespace}/{dr['metadata']['name']}"
        for ref in (t.baseline, t.canary):
            if ref.subset not in subsets:
                raise SubsetCheckError(f"subset {ref.subset!r} is not defined in {where} (subsets: "
                                       f"{', '.join(sorted(map(str, subsets))) or 'none'})")
        if not pods:
            return
        for ref in (t.baseline, t.canary):
            labels = subsets[ref.subset].get("labels") or {}
            selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
            # Subset labels alone (version=v2) also match other apps' pods: narrow them to the subset's
            # Deployment, whose selector its scale subresource tells.
            deployment = t.deployment_of(ref.subset)
            owner = self._deployment_selector(t.namespace, deployment)
            query = ",".join(dict.fromkeys(filter(None, f"{selector},{owner or ''}".split(","))))
            found = self.core.list_namespaced_pod(t.namespace, label_selector=query or None,
                                                  _request_timeout=self.timeout)
            ready = [p for p in found.items if _ready(p)]
            if not ready:
                of = f" of Deployment {deployment}" if owner else ""
                raise SubsetCheckError(f"subset {ref.subset!r} of {where} (labels {selector or 'none'}) selects "
                                       f"no ready pod{of} in namespace {t.namespace} ({len(found.items)} pods, "
                                       "0 ready)")

    def _deployment_selector(self, namespace: str, name: str) -> str | None:
        """The Deployment's label selector (from its scale subresource); None when there is no such Deployment."""
        try:
            scale = self.apps.read_namespaced_deployment_scale(name, namespace, _request_timeout=self.timeout)
        except ApiException as exc:
            if exc.status == 404:
                log.info("subset check without a deployment selector", deployment=name)
                return None
            raise
        return (scale.status.selector if scale.status else None) or None

    def other_claims(self, spec: RolloutSpec) -> list[str]:
        """Other VirtualServices in the namespace that also route our host: Istio applies only one of them for
        the mesh, so our weights might not be the ones in effect. Logged, not fatal (delegates are legitimate)."""
        t = spec.target
        host = _short(t.host, t.namespace)
        listed = self.custom.list_namespaced_custom_object(ISTIO_GROUP, self.version, t.namespace, "virtualservices",
                                                           _request_timeout=self.timeout)
        return [f"{t.namespace}/{vs['metadata']['name']}" for vs in listed.get("items", [])
                if vs["metadata"]["name"] != t.virtual_service
                and host in {_short(h, t.namespace) for h in vs.get("spec", {}).get("hosts") or []}]

    def _destination_rule(self, spec: RolloutSpec) -> dict:
        t = spec.target
        try:
            return self._get("destinationrules", t.namespace, t.destination_rule_name)
        except ApiException as exc:
            if exc.status != 404:
                raise
        # No DestinationRule by that name: the one whose host is ours (a common naming difference).
        listed = self.custom.list_namespaced_custom_object(ISTIO_GROUP, self.version, t.namespace, "destinationrules",
                                                           _request_timeout=self.timeout)
        host = _short(t.host, t.namespace)
        for dr in listed.get("items", []):
            if _short(dr.get("spec", {}).get("host", ""), t.namespace) == host:
                return dr
        raise SubsetCheckError(f"target.destinationRule: {t.namespace}/{t.destination_rule_name} not found, and no "
                               f"DestinationRule in {t.namespace} has host {t.host!r}")

    @staticmethod
    def _check_key(spec: RolloutSpec) -> str:
        return f"{spec.target.namespace}/{spec.target.virtual_service}/{spec.name}"

    def _check_once(self, spec: RolloutSpec, *, moves_traffic: bool) -> None:
        key = self._check_key(spec)
        if key in self._checked:
            return
        self.check_subsets(spec, pods=moves_traffic)
        if moves_traffic:
            others = self.other_claims(spec)
            if others:
                log.warning("other virtualservices route the same host", target=spec.name, host=spec.target.host,
                            others=others)
            self._checked.add(key)

    # ---- writes ----

    def set_weights(self, spec: RolloutSpec, weights: dict[str, int]) -> None:
        if sum(weights.values()) != 100 or any(type(w) is not int or w < 0 for w in weights.values()):
            raise ValueError(f"weights must be non-negative integers summing to 100, got {weights}")
        self._check_once(spec, moves_traffic=weights.get(spec.target.canary.subset, 0) > 0)

        def edit(vs: dict) -> Ops:
            i = self._route_index(spec, vs)
            route = vs["spec"]["http"][i]
            dests = copy.deepcopy(route.get("route") or [])
            subsets = [d.get("destination", {}).get("subset") for d in dests]
            if spec.target.canary.subset not in subsets:  # all-v1 style route: add the canary destination
                base = copy.deepcopy(dests[subsets.index(spec.target.baseline.subset)])
                base["destination"]["subset"] = spec.target.canary.subset
                dests.append(base)
            for d in dests:
                d["weight"] = weights[d["destination"]["subset"]]
            ops: Ops = []
            if dests != route.get("route"):
                ops.append({"op": "replace", "path": _pointer("spec", "http", i, "route"), "value": dests})
            ops += self._annotation_ops(vs, {WEIGHTS: json.dumps(weights, sort_keys=True)},
                                        original=json.dumps(route))
            return ops

        self._write(spec, edit, f"weights {_fmt(weights)}")

    def set_header_route(self, spec: RolloutSpec, match: HeaderMatch | None) -> None:
        if match is not None:
            self._check_once(spec, moves_traffic=True)
        name = self._header_name(spec)

        def edit(vs: dict) -> Ops:
            http = vs["spec"].get("http") or []
            at = next((i for i, r in enumerate(http) if r.get("name") == name), None)
            if match is None:
                return [] if at is None else [{"op": "remove", "path": _pointer("spec", "http", at)}]
            i = self._route_index(spec, vs)
            wanted = self._header_route_for(spec, http[i], match, name)
            if at is None:
                return [{"op": "add", "path": _pointer("spec", "http", i), "value": wanted},
                        *self._annotation_ops(vs, {}, original=json.dumps(http[i]))]
            if http[at] == wanted:
                return []
            return [{"op": "replace", "path": _pointer("spec", "http", at), "value": wanted}]

        self._write(spec, edit, "header route " + ("removed" if match is None else f"{match.header}={match.value}"))

    @staticmethod
    def _header_route_for(spec: RolloutSpec, route: dict, match: HeaderMatch, name: str) -> dict:
        """The managed route's copy (timeouts, retries, rewrites) whose matches also need the header, to the canary."""
        out = {k: copy.deepcopy(v) for k, v in route.items() if k not in ("name", "route", "mirror", "mirrors",
                                                                           "mirrorPercentage")}
        out["name"] = name
        matches = copy.deepcopy(route.get("match") or [{}])
        for m in matches:
            m["headers"] = {**m.get("headers", {}), match.header: {match.kind: match.value}}
        out["match"] = matches
        dests = route.get("route") or []
        base = next((d for d in dests if d.get("destination", {}).get("subset") == spec.target.baseline.subset),
                    dests[0] if dests else {"destination": {"host": spec.target.host}})
        dest = copy.deepcopy(base.get("destination", {}))
        dest["subset"] = spec.target.canary.subset
        out["route"] = [{"destination": dest}]
        return {"name": name, **{k: v for k, v in out.items() if k != "name"}}

    def restore(self, spec: RolloutSpec) -> None:
        """Back to the route recorded before our first write (weights of 100/0 when none was recorded)."""
        header = self._header_name(spec)

        def edit(vs: dict) -> Ops:
            raw = self._annotations(vs).get(ORIGINAL)
            http = vs["spec"].get("http") or []
            ops: Ops = []
            i = self._route_index(spec, vs)
            if raw:
                original = json.loads(raw)
                if http[i] != original:
                    ops.append({"op": "replace", "path": _pointer("spec", "http", i), "value": original})
            at = next((j for j, r in enumerate(http) if r.get("name") == header), None)
            if at is not None:
                ops.append({"op": "remove", "path": _pointer("spec", "http", at)})
            return ops

        if not self._annotations(self.virtual_service(spec)).get(ORIGINAL):
            log.warning("no original route recorded; setting all traffic to the baseline", target=spec.name)
            self.set_weights(spec, {spec.target.baseline.subset: 100, spec.target.canary.subset: 0})
        self._write(spec, edit, "original route restored")

    def annotate(self, spec: RolloutSpec, status: dict[str, str]) -> None:
        wanted = {PREFIX + k: str(v) for k, v in status.items() if k in STATUS_KEYS}

        def edit(vs: dict) -> Ops:
            ops = self._annotation_ops(vs, wanted)
            if status.get("phase") in FINAL_PHASES:  # the rollout is over: the next one records its own
                have = self._annotations(vs)
                ops += [{"op": "remove", "path": _pointer("metadata", "annotations", k)}
                        for k in (ORIGINAL, WEIGHTS) if k in have]
            return ops

        self._write(spec, edit, "status annotations", check_route=False)
        if status.get("phase") in FINAL_PHASES:  # a later rollout of the same spec checks its subsets again
            self._checked.discard(self._check_key(spec))

    def _annotation_ops(self, vs: dict, values: dict[str, str], *, original: str | None = None) -> Ops:
        have = self._annotations(vs)
        values = dict(values)
        if original is not None and ORIGINAL not in have:
            values[ORIGINAL] = original
        changes: Ops = [{"op": "add", "path": _pointer("metadata", "annotations", k), "value": v}
                        for k, v in values.items() if have.get(k) != v]
        if changes and vs.get("metadata", {}).get("annotations") is None:
            changes.insert(0, {"op": "add", "path": "/metadata/annotations", "value": {}})
        return changes

    def _write(self, spec: RolloutSpec, edit: Callable[[dict], Ops], what: str, *, check_route: bool = True) -> None:
        """Read, compute the JSON patch, send it guarded by the resourceVersion; on a conflict re-read and retry
        while our route is as we left it. No patch is sent when nothing changes (idempotent)."""
        t = spec.target
        first = None
        for attempt in range(self.max_conflicts + 1):
            vs = self.virtual_service(spec)
            if attempt and check_route:
                drift = self._drift_in(spec, vs)
                if drift is None and first is not None and self._ours(vs) is None:
                    # Before our first write: "as we left it" is the route as we read it first.
                    drift = self._compare(spec, first, vs)
                if drift is not None:
                    log.warning("route changed by another writer; not re-applied", target=spec.name,
                                change=drift.describe())
                    raise DriftDetected(drift)
            first = first or vs
            ops = edit(vs)
            if not ops:
                return
            rv = vs["metadata"]["resourceVersion"]
            body = [{"op": "test", "path": "/metadata/resourceVersion", "value": rv}, *ops]
            try:
                self.custom.patch_namespaced_custom_object(
                    ISTIO_GROUP, self.version, t.namespace, "virtualservices", t.virtual_service, body,
                    field_manager=FIELD_MANAGER, _content_type="application/json-patch+json",
                    _request_timeout=self.timeout)
                log.info("virtualservice written", target=spec.name, change=what, attempt=attempt + 1)
                return
            except ApiException as exc:
                if not self._is_conflict(exc, spec, rv):
                    raise
                log.info("virtualservice conflict; re-reading", target=spec.name, attempt=attempt + 1)
                time.sleep(min(1.0, self.backoff * 2 ** attempt))
        raise RouteConflict(f"VirtualService {t.namespace}/{t.virtual_service}: {what} still conflicted after "
                            f"{self.max_conflicts + 1} attempts")

    def _is_conflict(self, exc: ApiException, spec: RolloutSpec, rv: str) -> bool:
        if exc.status == 409:
            return True
        # A failed `test` of the resourceVersion answers 422, as does a write the schema refuses: tell them apart
        # by whether the object changed under us.
        return exc.status == 422 and self.virtual_service(spec)["metadata"]["resourceVersion"] != rv

    def _compare(self, spec: RolloutSpec, before: dict, now: dict) -> RouteDrift | None:
        try:
            old = self._weights_of(spec, before["spec"]["http"][self._route_index(spec, before)])
            new = self._weights_of(spec, now["spec"]["http"][self._route_index(spec, now)])
        except RouteNotFound as exc:
            return RouteDrift(found={}, ours={}, manager=self.changed_by(now), detail=str(exc))
        if old == new:
            return None
        return RouteDrift(found=new, ours=old, manager=self.changed_by(now),
                          detail=f"weights {_fmt(old)} became {_fmt(new)}")


def _ready(pod: Any) -> bool:
    if pod.metadata.deletion_timestamp is not None:
        return False
    conditions = (pod.status.conditions if pod.status else None) or []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


def _fmt(weights: dict[str, int] | Any) -> str:
    return "/".join(f"{k} {v}" for k, v in dict(weights).items()) or "none"
