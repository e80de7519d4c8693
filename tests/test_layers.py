"""The house rule: the core and the use cases import no adapter and no shell (architecture.md, Layers)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "analyzer"
CORE = ["model.py", "ports.py", "config.py", "errors.py", "evidence.py", "gate.py", "judge.py", "policy.py", "plan.py",
        "kayenta_gate.py", "engine.py", "replay.py", "backtest.py", "stats", "traces", "importers"]
OUTER = ("analyzer.app", "analyzer.sources", "analyzer.traffic", "analyzer.workloads", "analyzer.notify",
         "analyzer.store", "analyzer.sim", "analyzer.kube", "analyzer.hooks", "analyzer.load")


def _modules() -> list[Path]:
    found: list[Path] = []
    for name in CORE:
        path = PKG / name
        found += sorted(path.rglob("*.py")) if path.is_dir() else [path] if path.exists() else []
    return found


def _imports(path: Path) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):  # function-level imports count too
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
    return names


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PKG)))
def test_core_imports_no_adapter_or_shell(path: Path) -> None:
    bad = [m for m in _imports(path) if m.startswith(OUTER)]
    assert not bad, f"{path.relative_to(PKG)} imports {bad}"


def test_the_scan_sees_the_core() -> None:
    names = {p.name for p in _modules()}
    assert {"judge.py", "policy.py", "engine.py", "rate_ratio.py", "findings.py"} <= names
