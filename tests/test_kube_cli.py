"""`canary-analyzer demo --kubeconfig F --context C`: the real CLI, in a subprocess, drives the VirtualService on
the fake API server through the Istio router while the metrics stay simulated."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.kube_cluster import ROOT, bookinfo, canary_weights, has_header_route


def _kubeconfig(path: Path, url: str) -> Path:
    cfg = {"apiVersion": "v1", "kind": "Config", "current-context": "elsewhere",
           "clusters": [{"name": "test", "cluster": {"server": url}},
                        {"name": "elsewhere", "cluster": {"server": "http://127.0.0.1:9"}}],
           "users": [{"name": "dev", "user": {"token": "not-checked"}}],
           "contexts": [{"name": "test", "context": {"cluster": "test", "user": "dev"}},
                        {"name": "elsewhere", "context": {"cluster": "elsewhere", "user": "dev"}}]}
    path.write_text(json.dumps(cfg))
    return path


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "analyzer.app.cli", *args], capture_output=True, text=True,
                          timeout=300, cwd=ROOT)


def test_demo_drives_the_real_virtual_service(tmp_path: Path) -> None:
    with bookinfo() as c:
        kubeconfig = _kubeconfig(tmp_path / "kubeconfig", c.fake.url)
        proc = _cli("demo", "--json", "--seed", "3", "--db", f"sqlite:///{tmp_path / 'h.db'}",
                    "--kubeconfig", str(kubeconfig), "--context", "test")
        assert proc.returncode == 0, proc.stderr[-2000:]
        out = json.loads(proc.stdout)
        assert out["outcome"] == "promoted"
        assert out["final_weights"] == {"v1": 0, "v2": 100}  # read back from the VirtualService
        history = c.vs_history()
        last_header = max(i for i, vs in enumerate(history) if has_header_route(vs))
        assert [w for w in canary_weights(history[last_header + 1:]) if w] == [10, 25, 50, 100]
        assert c.fake.rejected == []
        assert {r.user_agent.split("/")[0] for r in c.fake.log} == {"canary-analyzer"}
        assert any(e["reason"] == "Promoted" for e in c.event_list())


def test_an_unreachable_context_is_one_clear_line(tmp_path: Path) -> None:
    kubeconfig = _kubeconfig(tmp_path / "kubeconfig", "http://127.0.0.1:9")
    proc = _cli("demo", "--json", "--db", f"sqlite:///{tmp_path / 'h.db'}", "--kubeconfig", str(kubeconfig),
                "--context", "nope")
    assert proc.returncode == 2
    assert "context 'nope'" in proc.stderr and "Traceback" not in proc.stderr
    proc = _cli("demo", "--json", "--db", f"sqlite:///{tmp_path / 'h.db'}", "--kubeconfig", str(kubeconfig),
                "--context", "elsewhere")
    assert proc.returncode == 2
    assert "cannot reach the Kubernetes API at http://127.0.0.1:9" in proc.stderr and "Traceback" not in proc.stderr
