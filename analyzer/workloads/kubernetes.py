"""Deployment scaler: the `scale` subresource, like `kubectl scale` in the manual flow. Nothing is ever deleted,
so that a rollback after promotion is a single step (scale the baseline back up and move the weights)."""

from __future__ import annotations

import structlog
from kubernetes import client
from kubernetes.client.rest import ApiException

from analyzer.config import RolloutSpec
from analyzer.errors import UserError
from analyzer.kube.client import FIELD_MANAGER

log = structlog.get_logger("analyzer.workloads.kubernetes")


class DeploymentNotFound(UserError):
    """The Deployment behind a subset does not exist (set `target.<side>.deployment`)."""


class DeploymentScaler:
    """A `Scaler` over Deployments: reads the scale, patches `spec.replicas` only when it differs."""

    def __init__(self, api: client.ApiClient, *, timeout: float = 10.0) -> None:
        self.apps = client.AppsV1Api(api)
        self.timeout = timeout

    def replicas(self, spec: RolloutSpec, subset: str) -> int:
        return int(self._read(spec, subset).spec.replicas or 0)

    def _read(self, spec: RolloutSpec, subset: str) -> client.V1Scale:
        name = spec.target.deployment_of(subset)
        try:
            return self.apps.read_namespaced_deployment_scale(name, spec.target.namespace,
                                                              _request_timeout=self.timeout)
        except ApiException as exc:
            if exc.status == 404:
                side = "baseline" if subset == spec.target.baseline.subset else "canary"
                raise DeploymentNotFound(f"target.{side}.deployment: Deployment {spec.target.namespace}/{name} of "
                                         f"subset {subset!r} not found") from None
            raise

    def scale(self, spec: RolloutSpec, subset: str, replicas: int) -> None:
        if replicas < 0:
            raise ValueError(f"replicas must be >= 0, got {replicas}")
        current = self._read(spec, subset)
        if current.spec.replicas == replicas:
            return
        name = spec.target.deployment_of(subset)
        self.apps.patch_namespaced_deployment_scale(
            name, spec.target.namespace, {"spec": {"replicas": replicas}}, field_manager=FIELD_MANAGER,
            _content_type="application/merge-patch+json", _request_timeout=self.timeout)
        log.info("deployment scaled", target=spec.name, deployment=name, replicas=replicas,
                 was=current.spec.replicas)
