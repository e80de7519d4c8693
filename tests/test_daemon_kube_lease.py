"""The daemon on a Kubernetes Lease (the fake API server): two replicas, one store, exactly one ticks."""

from __future__ import annotations

import json
import time
from pathlib import Path

from analyzer.app.daemon import Daemon, KubeLease
from analyzer.app.settings import load_settings
from analyzer.config import load_spec_text
from analyzer.store import control
from analyzer.store.sql import SqlStore
from tests.daemon_support import make_env
from tests.fakes.kube_api import FakeKubeApi


def test_two_daemons_on_one_lease_exactly_one_ticks(tmp_path: Path) -> None:
    env = make_env(tmp_path)
    with FakeKubeApi() as fake:
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "test",
            "clusters": [{"name": "test", "cluster": {"server": fake.url}}],
            "users": [{"name": "u", "user": {"token": "t"}}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": "u"}}]}))
        daemons = []
        for name in ("replica-a", "replica-b"):
            settings = load_settings(None, {"db": env.db, "sim": True, "sim_speed": 600, "poll": 0.1,
                                            "lease": "kubernetes", "lease_namespace": "canary-analyzer",
                                            "lease_ttl": 3, "identity": name, "kubeconfig": str(kubeconfig)},
                                     env={})
            daemons.append(Daemon(settings, SqlStore(env.db)))
        assert all(isinstance(d.elector, KubeLease) for d in daemons)
        spec, text = load_spec_text(env.specs / "reviews.yaml")
        store = SqlStore(env.db)
        control.create_rollout(store, "r1", spec, text, {"owner": "daemon", "scenario": "healthy", "seed": 1})
        for d in daemons:
            d.start()
        try:
            deadline = time.monotonic() + 60
            while store.phase_of("r1").value != "Succeeded" and time.monotonic() < deadline:
                time.sleep(0.1)
            roles = sorted(d.role for d in daemons)
        finally:
            for d in daemons:
                d.stop()
        assert store.phase_of("r1").value == "Succeeded"
        assert roles == ["follower", "leader"]
        ticks = sorted(d.ticks for d in daemons)
        assert ticks[0] == 0 and ticks[1] == store.tick_count("r1")
        lease = fake.get("coordination.k8s.io", "leases", "canary-analyzer", "canary-analyzer")
        assert "holderIdentity" not in lease["spec"]  # released on stop
