"""Generated specs and scenarios, valid and broken, through `validate`, `plan` and `demo`.

Whatever the input: exit 0 or 2, one line on stderr for 2 (one mutation is one problem), never a traceback,
and in the store either one finished rollout (exit 0) or nothing at all (exit 2).
"""

from __future__ import annotations

import copy
import json
import math
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analyzer.app.cli import main

ROOT = Path(__file__).resolve().parents[1]

# Short and trace-free, so a demo takes a second; the mutations below make it long, broken or odd.
BASE_SPEC: dict[str, Any] = {
    "metadata": {"name": "reviews"},
    "target": {"namespace": "bookinfo", "virtualService": "reviews", "host": "reviews",
               "baseline": {"subset": "v1"}, "canary": {"subset": "v2"}},
    "strategy": {"steps": [20, 50]},
    "timing": {"interval": "1m", "minDwell": 2, "budget": "20m"},
    "analysis": {"metrics": [
        {"name": "errors", "type": "error-rate", "tolerance": 1.5, "mde": 2},
        {"name": "latency", "type": "latency", "sloMs": 500, "tolerance": 1.5},
        {"name": "apdex", "type": "custom", "query": "sum(x)", "max": 10},
    ]},
}
SPEC_FIELDS = [
    ("metadata", "name"), ("target", "namespace"), ("target", "baseline", "subset"), ("target", "canary", "replicas"),
    ("strategy", "steps"), ("strategy", "steps", 0), ("strategy", "steps", 1), ("strategy", "type"),
    ("timing", "interval"), ("timing", "budget"), ("timing", "warmup"), ("timing", "minDwell"), ("timing", "maxDwell"),
    ("analysis", "alpha"), ("analysis", "promotionAlpha"), ("analysis", "power"), ("analysis", "judge"),
    ("analysis", "metrics", 0, "tolerance"), ("analysis", "metrics", 0, "mde"), ("analysis", "metrics", 0, "weight"),
    ("analysis", "metrics", 0, "negligibleRate"), ("analysis", "metrics", 0, "name"),
    ("analysis", "metrics", 1, "sloMs"), ("analysis", "metrics", 1, "tolerance"), ("analysis", "metrics", 1, "weight"),
    ("analysis", "metrics", 2, "name"), ("analysis", "metrics", 2, "max"), ("analysis", "metrics", 2, "failureLimit"),
    ("analysis", "guardrails", "sharedErrorRate"), ("onInconclusive",),
]
SCENARIO_FIELDS = [
    ("traffic", "rps"), ("traffic", "diurnal"), ("traffic", "diurnal_period"), ("traffic", "header_share"),
    ("traffic", "canary_share_factor"), ("baseline", "error_rate"), ("baseline", "latency", "median_ms"),
    ("baseline", "latency", "sigma"), ("regression", "error_ratio"), ("regression", "latency_scale"),
    ("regression", "onset"), ("regression", "ramp"), ("regression", "tail_share"), ("regression", "tail_ms"),
    ("shock_sigma",), ("overdispersion",), ("warmup", "factor"), ("warmup", "duration"),
    ("outages", 0, "start"), ("outages", 0, "end"), ("outages", 0, "error_rate"), ("gaps", 0, "start"),
    ("gaps", 0, "kind"), ("traces", "preset"), ("traces", "sampling_rate"), ("traces", "sigma"),
    ("traces", "graph", "ratings"), ("traces", "regressions", 0, "calls"), ("traces", "regressions", 0, "factor"),
]
BASE_SCENARIO: dict[str, Any] = {
    "traffic": {"rps": 50}, "baseline": {"error_rate": 0.005, "latency": {"median_ms": 80, "sigma": 0.5}},
    "outages": [{"start": "8m", "end": "10m", "error_rate": 0.2}], "gaps": [{"start": "3m", "end": "4m"}],
    "traces": {"preset": "trace-n-plus-one", "sampling_rate": 0.01, "graph": {"productpage": ["reviews"],
               "reviews": ["ratings"]}, "regressions": [{"kind": "n-plus-one", "service": "ratings", "calls": 4}]},
}

VALUES = st.one_of(
    st.sampled_from([math.inf, -math.inf, math.nan, 0, -1, 1, 2, 100, 101, 1e20, 1e308, -1e308, 0.5, 1e-300,
                     "10", "1.5", "abc", "5m", "1d", "366d", "-5m", "", "٣", "traffic-split", "shared-outage",
                     "kayenta", "traces/x", "v1", "prometheus", "kayenta", True, None, [], [0], [10, 5], ["x"],
                     [[1]], 10**30, "productpage", ["productpage"], "trace-nope", "unavailable"]),
    st.integers(min_value=-10**6, max_value=10**6),
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.text(max_size=8),
)


def mutate(base: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    data = copy.deepcopy(base)
    node: Any = data
    for key in path[:-1]:
        node = node[key] if isinstance(node, list) else node.setdefault(key, {})
    if isinstance(node, list):
        node[path[-1]] = value
    else:
        node[path[-1]] = value
    return data


MUTATIONS = st.one_of(
    st.just(None),
    st.tuples(st.just("spec"), st.sampled_from(SPEC_FIELDS), VALUES),
    st.tuples(st.just("scenario"), st.sampled_from(SCENARIO_FIELDS), VALUES),
)


def run(*args: str) -> tuple[int, str, str]:
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(list(args))
    return rc, out.getvalue(), err.getvalue()


def check(rc: int, err: str, what: str) -> None:
    assert "Traceback" not in err and "internal error" not in err, (what, err)
    assert rc in (0, 2), (what, rc, err)
    if rc == 2:
        assert len(err.splitlines()) == 1, (what, err)


def rollouts(db: Path) -> list[tuple[str, str | None]]:
    if not db.exists():
        return []
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT phase, outcome FROM rollouts").fetchall()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(MUTATIONS)
def test_generated_input_exits_0_or_2_in_one_line_and_never_half_writes(mutation: tuple | None) -> None:
    spec, scenario = BASE_SPEC, BASE_SCENARIO
    if mutation is not None:
        target, path, value = mutation
        if target == "spec":
            spec = mutate(spec, path, value)
        else:
            scenario = mutate(scenario, path, value)
    with tempfile.TemporaryDirectory() as tmp:
        spec_file, scenario_file, db = Path(tmp, "spec.yaml"), Path(tmp, "scenario.yaml"), Path(tmp, "h.db")
        spec_file.write_text(yaml.safe_dump(spec, allow_unicode=True))
        scenario_file.write_text(yaml.safe_dump(scenario, allow_unicode=True))
        rc, _, err = run("validate", str(spec_file))
        check(rc, err, "validate")
        valid = rc == 0
        rc, _, err = run("plan", str(spec_file), "--json")
        check(rc, err, "plan")
        assert (rc == 0) == valid
        rc, out, err = run("demo", "--config", str(spec_file), "--scenario", str(scenario_file), "--json",
                           "--db", f"sqlite:///{db}")
        check(rc, err, "demo")
        if rc == 0:
            assert valid
            assert json.loads(out)["rollout"]
            [(phase, outcome)] = rollouts(db)
            assert outcome is not None, phase  # finished, not left half-started
        else:
            assert rollouts(db) == []
            assert not db.exists()


@pytest.mark.parametrize(("field", "value"), [(("timing", "interval"), math.inf), (("strategy", "steps"), ["10"]),
                                              (("analysis", "metrics", 2, "name"), "traffic-split")])
def test_generated_broken_spec_in_a_subprocess(field: tuple[Any, ...], value: Any, tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(mutate(BASE_SPEC, field, value)))
    db = tmp_path / "h.db"
    proc = subprocess.run([sys.executable, "-m", "analyzer.app.cli", "demo", "--config", str(spec), "--db",
                           f"sqlite:///{db}"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    [line] = proc.stderr.splitlines()
    assert ".".join(str(p) for p in field[:2]) in line.replace("[", ".").replace("]", "")
    assert not db.exists()
