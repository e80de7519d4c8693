"""The Grafana dashboard: every PromQL expression parses in real Prometheus (promtool), and every panel's
datasource and every variable it uses are defined."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import require_or_skip

DASHBOARD = Path(__file__).resolve().parents[1] / "deploy/grafana/canary-analyzer.json"
BUILTINS = {"__rate_interval": "5m", "__interval": "1m", "__range": "1h"}
OWN_METRICS = ("canary_analyzer_canary_weight", "canary_analyzer_phase", "canary_analyzer_evidence",
               "canary_analyzer_decisions_total", "canary_analyzer_tick_duration_seconds")
REFERENCE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")
LABEL_VALUES = re.compile(r"^label_values\((.*),\s*(\w+)\)$", re.S)


def _dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def _variables(d: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in d["templating"]["list"]}


def _panels(d: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for p in d["panels"]:
        out += [p] if p["type"] != "row" else p.get("panels", [])
    return out


def _expressions(d: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, PromQL) for every panel target and every query variable (label_values' selector)."""
    found = [(f"panel {p['title']!r} {t['refId']}", t["expr"]) for p in _panels(d) for t in p.get("targets", [])]
    for name, v in _variables(d).items():
        if v["type"] == "query":
            match = LABEL_VALUES.match(v["query"]["query"])
            assert match, f"variable {name}: only label_values(selector, label) queries are used"
            found.append((f"variable {name}", match.group(1)))
    return found


def _substitute(expr: str, variables: dict[str, dict[str, Any]]) -> str:
    def value(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        if name in BUILTINS:
            return BUILTINS[name]
        assert name in variables, f"${name} is not a dashboard variable"
        return ".*"

    return REFERENCE.sub(value, expr)


def test_every_panel_has_a_defined_datasource_and_defined_variables() -> None:
    d = _dashboard()
    variables = _variables(d)
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert {"namespace", "service", "rollout"} <= set(variables)
    panels = _panels(d)
    assert len({p["id"] for p in d["panels"]}) == len(d["panels"])
    for p in panels:
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert t.get("datasource", p["datasource"]) == p["datasource"], p["title"]
        for text in [p["title"], *(t["expr"] for t in p["targets"])]:
            for m in REFERENCE.finditer(text):
                name = m.group(1) or m.group(2)
                assert name in variables or name in BUILTINS, f"{p['title']}: ${name} undefined"
    exprs = " ".join(e for _, e in _expressions(d))
    for metric in OWN_METRICS:
        assert metric in exprs, metric
    for metric in ("istio_requests_total", "istio_request_duration_milliseconds_bucket"):
        assert metric in exprs


def _promtool_check(expressions: list[tuple[str, str]], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:expr_{i}", "expr": expr} for i, (_, expr) in enumerate(expressions)]}]}
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(rules, width=10_000))
    promtool = shutil.which("promtool")
    assert promtool is not None
    return subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)


@pytest.mark.prometheus
def test_every_promql_expression_parses_in_prometheus(tmp_path: Path) -> None:
    require_or_skip(shutil.which("promtool") is not None, "promtool (Prometheus) is not installed")
    d = _dashboard()
    variables = _variables(d)
    expressions = [(where, _substitute(e, variables)) for where, e in _expressions(d)]
    assert len(expressions) >= 12
    result = _promtool_check(expressions, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(expressions)} rules found" in result.stdout
    # The check is real: promtool rejects a broken expression.
    broken = _promtool_check([("broken", "sum(rate(istio_requests_total[5m])")], tmp_path)
    assert broken.returncode != 0
