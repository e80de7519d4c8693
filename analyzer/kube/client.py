"""Kubernetes client set-up: in-cluster or kubeconfig + context, one `ApiClient` per process setting.

Each adapter gets its own `ApiClient` instead of the library's process-wide default, so two clusters (or a test
server) can be used side by side. Also: which `networking.istio.io` version the cluster serves.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import structlog
import urllib3
from kubernetes import client, config
from kubernetes.client.rest import ApiException
from kubernetes.config.config_exception import ConfigException

from analyzer.errors import UserError

ISTIO_GROUP = "networking.istio.io"
ISTIO_VERSIONS = ("v1", "v1beta1", "v1alpha3")  # newest first (formats.md §2.1)
FIELD_MANAGER = "canary-analyzer"  # the managedFields manager of our writes; drift from others is told apart by it
SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")

log = structlog.get_logger("analyzer.kube")


class KubeConfigError(UserError):
    """The cluster cannot be reached with the given settings."""


@dataclass(frozen=True)
class KubeSettings:
    """How to reach the cluster. No kubeconfig and no host: in-cluster when running in a pod, else KUBECONFIG."""

    kubeconfig: str | None = None
    context: str | None = None
    in_cluster: bool | None = None  # None: decide from the environment
    host: str | None = None  # a plain URL (tests, `kubectl proxy`): no credentials
    timeout: float = 10.0  # seconds per request

    @property
    def running_in_cluster(self) -> bool:
        if self.in_cluster is not None:
            return self.in_cluster
        return self.kubeconfig is None and self.host is None and "KUBERNETES_SERVICE_HOST" in os.environ


def api_client(settings: KubeSettings) -> client.ApiClient:
    """A fresh ApiClient for these settings. Raises KubeConfigError with one clear line."""
    cfg = client.Configuration()
    try:
        if settings.host is not None:
            cfg.host = settings.host.rstrip("/")
        elif settings.running_in_cluster:
            config.load_incluster_config(client_configuration=cfg)
        else:
            path = settings.kubeconfig or os.environ.get("KUBECONFIG") or None
            if path is not None and not Path(path.split(os.pathsep)[0]).expanduser().is_file():
                raise KubeConfigError(f"--kubeconfig: {path!r} is not a readable file")
            config.load_kube_config(config_file=path, context=settings.context, client_configuration=cfg)
    except ConfigException as exc:
        if settings.running_in_cluster:
            where = "the in-cluster service account"
        else:
            where = f"context {settings.context!r}" if settings.context else "the kubeconfig"
        raise KubeConfigError(f"cannot use {where}: {exc}") from None
    cfg.retries = 0  # our callers retry where it is safe; the default turns one timeout into four
    api = client.ApiClient(cfg)
    api.user_agent = f"{FIELD_MANAGER}/python"
    return api


def istio_version(api: client.ApiClient) -> str:
    """The newest served `networking.istio.io` version: v1, then v1beta1, then v1alpha3.

    Raises KubeConfigError when the API server cannot be reached or Istio's CRDs are not installed.
    """
    try:
        return _istio_version(api)
    except urllib3.exceptions.HTTPError as exc:
        raise KubeConfigError(f"cannot reach the Kubernetes API at {api.configuration.host}: "
                              f"{type(exc).__name__}") from None
    except ApiException as exc:
        if exc.status in (401, 403):
            raise KubeConfigError(f"the Kubernetes API at {api.configuration.host} refused our credentials "
                                  f"({exc.status} {exc.reason})") from None
        raise


def _istio_version(api: client.ApiClient) -> str:
    try:
        groups = client.ApisApi(api).get_api_versions()
        served = {v.version for g in groups.groups or [] if g.name == ISTIO_GROUP for v in g.versions}
    except ApiException as exc:
        if exc.status in (401, 403):
            raise
        log.info("api group discovery failed, probing versions", status=exc.status)
        served = set()
        for version in ISTIO_VERSIONS:
            try:
                client.CustomObjectsApi(api).get_api_resources(ISTIO_GROUP, version)
                served.add(version)
                break
            except ApiException as probe:
                if probe.status != 404:
                    raise
    for version in ISTIO_VERSIONS:
        if version in served:
            return version
    raise KubeConfigError(f"the cluster serves no {ISTIO_GROUP} version of {', '.join(ISTIO_VERSIONS)}: "
                          "is Istio installed?")
