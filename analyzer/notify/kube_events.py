"""Kubernetes Events on the VirtualService: `kubectl describe vs reviews` (and Kiali) show each phase change,
rollback, pause and drift next to the object they concern."""

from __future__ import annotations

from datetime import UTC, datetime

import structlog
from kubernetes import client
from kubernetes.client.rest import ApiException

from analyzer.config import RolloutSpec
from analyzer.kube.client import FIELD_MANAGER, ISTIO_GROUP, istio_version
from analyzer.model import Event

log = structlog.get_logger("analyzer.notify.kube_events")

# notification event -> (Event reason, Event type); unknown events become CamelCase reasons of type Normal
REASONS: dict[str, tuple[str, str]] = {
    "phase": ("PhaseChanged", "Normal"),
    "advanced": ("Advanced", "Normal"),
    "promoted": ("Promoted", "Normal"),
    "rollback": ("RollingBack", "Warning"),
    "abort": ("Aborted", "Warning"),
    "pause": ("Paused", "Warning"),
    "inconclusive": ("Inconclusive", "Warning"),
    "failed": ("Failed", "Warning"),
    "drift": ("RouteDrift", "Warning"),
}
MAX_MESSAGE = 1024  # the API server refuses longer Event messages


def reason_for(event: Event | str) -> tuple[str, str]:
    return REASONS.get(event) or ("".join(p.capitalize() for p in event.replace("_", "-").split("-")), "Normal")


class KubeEventNotifier:
    """A `Notifier` that creates core/v1 Events whose involvedObject is the rollout's VirtualService."""

    def __init__(self, api: client.ApiClient, *, version: str | None = None, instance: str = "",
                 timeout: float = 10.0) -> None:
        self.api = api
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self._version = version
        self.instance = instance  # reportingInstance: the pod name in a cluster
        self.timeout = timeout

    @property
    def version(self) -> str:
        if self._version is None:
            self._version = istio_version(self.api)
        return self._version

    def notify(self, spec: RolloutSpec, event: Event, message: str, *, rollout: str = "", tick: int = 0) -> None:
        t = spec.target
        reason, kind = reason_for(event)
        ref = client.V1ObjectReference(api_version=f"{ISTIO_GROUP}/{self.version}", kind="VirtualService",
                                       name=t.virtual_service, namespace=t.namespace)
        try:  # the uid ties the Event to this very object (kubectl describe filters on it)
            vs = self.custom.get_namespaced_custom_object(ISTIO_GROUP, self.version, t.namespace, "virtualservices",
                                                          t.virtual_service, _request_timeout=self.timeout)
            ref.uid = vs["metadata"].get("uid")
            ref.resource_version = vs["metadata"].get("resourceVersion")
        except ApiException as exc:
            log.info("event without uid: virtualservice unreadable", status=exc.status)
        now = datetime.now(UTC)
        body = client.CoreV1Event(
            metadata=client.V1ObjectMeta(generate_name=f"{t.virtual_service}.", namespace=t.namespace,
                                         labels={"app.kubernetes.io/managed-by": FIELD_MANAGER}),
            involved_object=ref, reason=reason, type=kind,
            message=(f"{rollout}: {message}" if rollout else f"{spec.name}: {message}")[:MAX_MESSAGE],
            source=client.V1EventSource(component=FIELD_MANAGER), reporting_component=FIELD_MANAGER,
            reporting_instance=self.instance or None, first_timestamp=now, last_timestamp=now, count=1,
            action=str(event))
        self.core.create_namespaced_event(t.namespace, body, field_manager=FIELD_MANAGER,
                                          _request_timeout=self.timeout)
        log.info("event created", target=spec.name, reason=reason, type=kind)
