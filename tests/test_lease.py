"""Leader election on a Lease: two replicas against the fake API server, over HTTP with the real client."""

from __future__ import annotations

import threading
import time

import pytest

from analyzer.kube.client import KubeSettings, api_client
from analyzer.kube.lease import LeaseElector, LeaseSettingsError
from tests.fakes.kube_api import FakeKubeApi

NS = "canary-analyzer"
TIMING = {"lease_duration": 3, "renew_deadline": 1.8, "retry_period": 0.25}  # generous: CI machines are busy


def _replica(fake: FakeKubeApi, name: str, log: list[tuple[float, str, str]]) -> LeaseElector:
    api = api_client(KubeSettings(host=fake.url))
    api.user_agent = f"{name}/test"  # lets a fault hook cut one replica off
    return LeaseElector(api, namespace=NS, identity=name, **TIMING,  # type: ignore[arg-type]
                        on_started=lambda: log.append((time.monotonic(), name, "started")),
                        on_stopped=lambda: log.append((time.monotonic(), name, "stopped")))


class _Overlap:
    """Samples both replicas every 5 ms: at no moment may both say they lead."""

    def __init__(self, *replicas: LeaseElector) -> None:
        self.replicas, self.both, self.stop = replicas, 0, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            if sum(r.is_leader() for r in self.replicas) > 1:
                self.both += 1
            time.sleep(0.005)

    def close(self) -> int:
        self.stop.set()
        self.thread.join()
        return self.both


def _wait(cond, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.01)
    return False


def test_two_replicas_one_leader_and_the_loser_stops_before_the_other_starts() -> None:
    log: list[tuple[float, str, str]] = []
    with FakeKubeApi() as fake:
        a, b = _replica(fake, "replica-a", log), _replica(fake, "replica-b", log)
        a.start()
        assert _wait(a.is_leader, 3)
        b.start()
        overlap = _Overlap(a, b)
        time.sleep(1.5)  # several renewals: b stays a follower while a renews
        assert a.is_leader() and not b.is_leader()
        lease = fake.get("coordination.k8s.io", "leases", NS, "canary-analyzer")
        assert lease["spec"]["holderIdentity"] == "replica-a" and lease["spec"]["leaseDurationSeconds"] == 3

        # replica-a is cut off from the API server: it cannot renew, and must stop before b takes over.
        def cut(req):  # type: ignore[no-untyped-def]
            return (503, "ServiceUnavailable") if (req.user_agent or "").startswith("replica-a") else None

        fake.faults.append(cut)
        a_until = a.leading_until()
        deadline = time.monotonic() + 8
        while not b.is_leader() and time.monotonic() < deadline:
            a_until = a.leading_until() or a_until  # the end of a's last term, as a itself reckons it
            time.sleep(0.005)
        assert b.is_leader() and a_until is not None
        started_b = next(t for t, who, what in log if who == "replica-b" and what == "started")
        assert a_until < started_b  # a's leadership had ended before b's began
        assert not a.is_leader()
        assert any(who == "replica-a" and what == "stopped" for _, who, what in log)
        fake.faults.remove(cut)

        # b hands over on shutdown: a takes over without waiting for the lease to expire.
        time.sleep(0.3)
        handed = time.monotonic()
        b.stop(release=True)
        assert _wait(a.is_leader, 2)
        assert time.monotonic() - handed < 3  # well before the 3 s lease would have run out
        assert overlap.close() == 0
        a.stop()
        # Only get, create and update on leases (the RBAC in deploy/ grants exactly these).
        verbs = {r.verb for r in fake.requests(plural="leases")}
        assert verbs == {"get", "create", "update"}


def test_a_crashed_leader_is_replaced_after_the_lease_expires() -> None:
    log: list[tuple[float, str, str]] = []
    with FakeKubeApi() as fake:
        a, b = _replica(fake, "replica-a", log), _replica(fake, "replica-b", log)
        a.start()
        assert _wait(a.is_leader, 3)
        b.start()
        time.sleep(0.5)
        crashed = time.monotonic()
        a.stop(release=False)  # kill -9: no hand-over
        assert _wait(b.is_leader, 8)
        assert time.monotonic() - crashed >= 3 - 0.5  # not before the lease ran out, as b saw it
        b.stop()


def test_bad_lease_settings_are_one_clear_error() -> None:
    with FakeKubeApi() as fake:
        api = api_client(KubeSettings(host=fake.url))
        with pytest.raises(LeaseSettingsError, match=r"renew deadline: 20\.0s must be above 0 and below the lease"):
            LeaseElector(api, namespace=NS, lease_duration=15, renew_deadline=20.0)


def test_the_composition_root_builds_an_elector_from_the_process_settings(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json

    from analyzer.app import wiring

    with FakeKubeApi() as fake:
        path = tmp_path / "kubeconfig"
        path.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "test",
            "clusters": [{"name": "test", "cluster": {"server": fake.url}}],
            "users": [{"name": "u", "user": {"token": "t"}}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": "u"}}]}))
        elector = wiring.leader_elector(wiring.Settings(kubeconfig=str(path)), namespace=NS, identity="pod-1")
        assert elector.round() and elector.is_leader()
        elector.stop()
        assert not elector.is_leader()
        lease = fake.get("coordination.k8s.io", "leases", NS, "canary-analyzer")
        assert "holderIdentity" not in lease["spec"]  # released on stop: the next replica need not wait
