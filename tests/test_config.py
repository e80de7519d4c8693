"""The rollout spec: examples load, and malformed specs get one clear message naming the field and value."""

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from analyzer.app.cli import main
from analyzer.config import SpecError, load_spec, parse_duration, parse_spec

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "config" / "examples").glob("*.yaml"))
BASE = yaml.safe_load((ROOT / "config" / "examples" / "reviews.yaml").read_text())


def mutate(path: str, value: object) -> dict:
    data = copy.deepcopy(BASE)
    node = data
    keys = path.split(".")
    for k in keys[:-1]:
        node = node[int(k)] if isinstance(node, list) else node.setdefault(k, {})
    last = keys[-1]
    if value is DELETE:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return data


DELETE = object()


def test_examples_validate() -> None:
    assert len(EXAMPLES) >= 2
    for path in EXAMPLES:
        spec = load_spec(path)
        assert spec.strategy.weights[-1] == 100


def test_reviews_example_matches_the_issue() -> None:
    spec = load_spec(ROOT / "config/examples/reviews.yaml")
    assert (spec.target.namespace, spec.target.baseline.subset, spec.target.canary.subset) == ("bookinfo", "v1", "v2")
    assert spec.strategy.header_phase is not None and spec.strategy.header_phase.value == "jason"
    assert spec.strategy.weights == [10, 25, 50, 100]
    assert spec.analysis.alpha == 0.01


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("strategy.steps", [10, 25, 120], "strategy.steps[2]: 120 is above 100"),
        ("strategy.steps", [10, 50, 25], "strategy.steps[2]: 25 does not increase on 50"),
        ("strategy.steps", [0, 50], "strategy.steps[0]: 0 is not above 0"),
        ("timing.interval", "ten minutes", "timing.interval: 'ten minutes' is not a duration"),
        ("timing.minDwell", 0, "timing.minDwell: 0: Input should be greater than or equal to 1"),
        ("analysis.alpha", 1.5, "analysis.alpha: 1.5: Input should be less than 0.5"),
        ("onInconclusive", "explode", "onInconclusive: 'explode'"),
        ("target.canary.subset", "v1", "target: baseline and canary use the same subset 'v1'"),
        ("target.namespace", "Book_Info", "target.namespace: 'Book_Info' is not a valid Kubernetes name"),
        ("analysis.metrics.1.edges", [100, 333], "analysis.metrics[1].edges[1]: 333 is not a histogram bucket edge"),
        ("analysis.metrics.0.type", "errorz", "analysis.metrics[0]"),
        ("target.virtualService", DELETE, "target.virtualService: is required"),
        ("strategy.colour", "blue", "strategy.colour: unknown field"),
        ("analysis.metrics.1.name", "errors", "analysis.metrics[1].name: 'errors' is used twice"),
        ("strategy.type", "ab-test", None),  # valid: the reviews spec has a header phase
    ],
)
def test_malformed_specs_name_field_and_value(path: str, value: object, expected: str | None) -> None:
    data = mutate(path, value)
    if expected is None:
        assert parse_spec(data).strategy.type == "ab-test"
        return
    with pytest.raises(SpecError) as exc:
        parse_spec(data, "reviews.yaml")
    assert expected in str(exc.value), str(exc.value)
    assert str(exc.value).startswith("reviews.yaml: ")


def test_ab_test_needs_header_phase() -> None:
    data = mutate("strategy.headerPhase", DELETE)
    data["strategy"]["type"] = "ab-test"
    with pytest.raises(SpecError, match="needs a headerPhase"):
        parse_spec(data)


def test_durations() -> None:
    assert parse_duration("90s") == 90
    assert parse_duration("5m") == 300
    assert parse_duration("1.5h") == 5400
    assert parse_duration("250ms") == 0.25
    assert parse_duration(42) == 42
    with pytest.raises(ValueError):
        parse_duration("-5m")


def test_cli_validate_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = ROOT / "config/examples/reviews.yaml"
    assert main(["validate", str(good)]) == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(mutate("strategy.steps", [10, 25, 120])))
    assert main(["validate", str(good), str(bad)]) == 2
    captured = capsys.readouterr()
    assert "strategy.steps[2]: 120 is above 100" in captured.err
    broken = tmp_path / "broken.yaml"
    broken.write_text("target: [unclosed")
    assert main(["validate", str(broken)]) == 2
    assert "not valid YAML" in capsys.readouterr().err
    assert main(["validate", str(tmp_path / "missing.yaml")]) == 2


def test_cli_bad_spec_has_no_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(mutate("timing.interval", "soon")))
    proc = subprocess.run([sys.executable, "-m", "analyzer.app.cli", "demo", "--config", str(bad), "--json"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "timing.interval: 'soon' is not a duration" in proc.stderr
    assert proc.stdout == ""
