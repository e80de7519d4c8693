"""`canary-analyzer import kayenta`: the pure converter, the same verdicts, and the command end to end."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from analyzer.config import parse_spec
from analyzer.importers.kayenta import KayentaImportError, convert, map_template
from analyzer.kayenta_gate import kayenta_config
from analyzer.stats.kayenta import config_from_dict, judge

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "config/examples/kayenta/integration-test-cpu.json"
CONVERTED = ROOT / "config/examples/kayenta/integration-test-cpu.yaml"

# peers.md §b.8 style, widened to touch every mapping.
RICH = {
    "name": "Reviews Istio", "description": "golden signals", "configVersion": "1", "applications": ["ad-hoc"],
    "judge": {"name": "NetflixACAJudge-v1.0", "judgeConfigurations": {}},
    "metrics": [
        {"name": "error_ratio", "groups": ["errors"], "scopeName": "default",
         "query": {"type": "prometheus", "customInlineTemplate":
                   'PromQL:sum(rate(istio_requests_total{destination_version="${scope}",response_code=~"5.."}[1m]))'
                   '/sum(rate(istio_requests_total{destination_version="${scope}"}[1m]))'},
         "analysisConfigurations": {"canary": {"direction": "increase", "nanStrategy": "replace", "critical": True,
                                               "effectSize": {"allowedIncrease": 1.1, "criticalIncrease": 2.0}}}},
        {"name": "latency", "groups": ["latency"],
         "query": {"type": "prometheus", "metricName": "request_latency_seconds",
                   "customInlineTemplate": "app='reviews', region='${location}', version=~'${scope}.*'",
                   "groupByFields": ["pod"]},
         "analysisConfigurations": {"canary": {"direction": "up", "nanStrategy": "none", "mustHaveData": True,
                                               "outliers": {"strategy": "remove", "outlierFactor": 2.5},
                                               "effectSize": {"measure": "cles", "allowedIncrease": 0.8}}}},
        {"name": "cpu", "groups": ["latency", "system"], "query": {"type": "prometheus", "metricName": "cpu"},
         "analysisConfigurations": {"canary": {"direction": "decrease"}}},
        {"name": "muted", "groups": ["system"], "query": {"type": "prometheus", "metricName": "m"},
         "analysisConfigurations": {"canary": {"muted": True}}},
        {"name": "atlas", "groups": ["system"], "query": {"type": "atlas", "q": "name,x,:eq"}},
    ],
    "templates": {},
    "classifier": {"groupWeights": {"errors": 60, "latency": 30}, "scoreThresholds": {"pass": 80, "marginal": 60}},
}


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "analyzer.app.cli", *args], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)


def test_converter_maps_metrics_groups_and_thresholds() -> None:
    result = convert(RICH, namespace="bookinfo", service="reviews")
    spec = parse_spec(result.spec)  # the output is a valid spec
    assert (spec.name, spec.target.namespace, spec.target.host, spec.analysis.judge) == (
        "reviews-istio", "bookinfo", "reviews", "kayenta")
    block = spec.analysis.kayenta
    assert block is not None
    err, lat, cpu = block.metrics
    assert err.query == ('sum(rate(istio_requests_total{{{ subset_label }}="{{ subset }}",response_code=~"5.."}[1m]))'
                         '/sum(rate(istio_requests_total{{{ subset_label }}="{{ subset }}"}[1m]))')
    assert (err.direction, err.nan_strategy, err.critical, err.groups) == ("increase", "replace", True, ["errors"])
    assert (err.effect_size.allowed_increase, err.effect_size.critical_increase) == (1.1, 2.0)
    assert lat.query == (
        """avg(request_latency_seconds{app='reviews', region="${location}", {{ subset_label }}="{{ subset }}"})""")
    assert (lat.direction, lat.nan_strategy, lat.must_have_data) == ("either", "remove", True)
    assert (lat.outliers.strategy, lat.outliers.outlier_factor, lat.effect_size.measure) == ("remove", 2.5, "cles")
    assert cpu.query == 'avg(cpu{{{ subset_label }}="{{ subset }}"})' and cpu.direction == "decrease"
    assert map_template("pod=~'${scope}-.*'", "t", notes := []) == "pod=~'{{ subset }}-.*'"
    assert notes == ["t: changed: ${scope} becomes {{ subset }} (the subset's label value)"]
    assert block.group_weights == {"errors": 60.0, "latency": 30.0}
    assert (block.score_thresholds.pass_, block.score_thresholds.marginal) == (80.0, 60.0)

    notes = "\n".join(result.unmapped)
    for expected in ["${location} has no equivalent", "groupByFields: not mapped", "'up' is read as 'either'",
                     "metrics[3] (muted): not mapped: muted", "metrics[4] (atlas): not mapped: query type 'atlas'",
                     "configVersion: not mapped", "metrics[2] (cpu).query: changed: no filter"]:
        assert expected in notes
    assert all("\n" not in line for line in result.unmapped)


def test_converted_spec_keeps_kayentas_verdicts() -> None:
    """The gate's config from the converted spec judges like NetflixACAJudge's reading of the original JSON."""
    original = {**RICH, "metrics": RICH["metrics"][:3]}  # the metrics we can query
    ours = kayenta_config(parse_spec(convert(original).spec).analysis.kayenta)
    theirs = config_from_dict(original, RICH["classifier"]["scoreThresholds"])
    assert ours == theirs
    rng = np.random.default_rng(11)
    labels = set()
    for case in range(40):
        shift = rng.choice([0.0, 0.5, 3.0])
        data = {}
        for name in ("error_ratio", "latency", "cpu"):
            control = rng.gamma(2.0, 1.0, 30)
            experiment = rng.gamma(2.0, 1.0, 30) + shift * rng.choice([-1, 1])
            experiment[rng.random(30) < 0.1] = np.nan
            data[name] = (control, experiment)
        a, b = judge(data, ours, seed=case), judge(data, theirs, seed=case)
        assert (a.score, a.classification, [m.classification for m in a.metrics]) == (
            b.score, b.classification, [m.classification for m in b.metrics])
        labels.add(a.classification)
    assert labels == {"Pass", "Marginal", "Fail"}  # the cases exercise every outcome


@pytest.mark.parametrize(("config", "message"), [
    ({"metrics": []}, "metrics: []: needs a list of at least one metric"),
    ({"metrics": [{"query": {"metricName": "x"}}]}, "metrics[0].name: None is not a metric name"),
    ({"metrics": [{"name": "a", "query": {"metricName": "x", "customFilterTemplate": "t"}}]},
     "metrics[0] (a).query.customFilterTemplate: 't' is not in templates"),
    ({"metrics": [{"name": "a", "query": {"type": "prometheus"}}]}, "metrics[0] (a).query.metricName: None"),
    ({"metrics": [{"name": "a", "query": {"metricName": "x"},
                   "analysisConfigurations": {"canary": {"effectSize": {"allowedIncrease": "big"}}}}]},
     "metrics[0] (a).effectSize.allowedIncrease: 'big' is not a number"),
    ({"metrics": [{"name": "a", "query": {"type": "atlas"}}]}, "none of the metrics can be judged from Prometheus"),
])
def test_unreadable_configs_name_the_field(config: dict, message: str) -> None:
    with pytest.raises(KayentaImportError) as exc:
        convert(config)
    assert message in str(exc.value)


def test_command_converts_kayentas_own_example(tmp_path: Path) -> None:
    proc = cli("import", "kayenta", str(EXAMPLE), "--namespace", "bookinfo", "--service", "reviews")
    assert proc.returncode == 0, proc.stderr
    assert yaml.safe_load(proc.stdout) == yaml.safe_load(CONVERTED.read_text())  # the committed example
    assert proc.stderr.splitlines() == [
        f"{EXAMPLE}: templates.standard-template: changed: the ${{scope}} matcher becomes "
        '{{ subset_label }}="{{ subset }}" (a side is a subset)']
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(proc.stdout)
    check = cli("validate", str(spec_file))
    assert check.returncode == 0, check.stderr
    assert "ok (rollout 'integration-test-canary-config'" in check.stdout


def test_command_writes_out_file(tmp_path: Path) -> None:
    target = tmp_path / "out.yaml"
    proc = cli("import", "kayenta", str(EXAMPLE), "--out", str(target))
    assert proc.returncode == 0 and proc.stdout == ""
    assert parse_spec(yaml.safe_load(target.read_text())).analysis.kayenta is not None


@pytest.mark.parametrize(("content", "problem"), [
    ('{"metrics": [', "not valid JSON: Expecting value at line 1 column 14"),
    ("[1, 2]", "canary config: expected an object, got list"),
    ('{"metrics": [{"name": "a", "query": {"type": "prometheus"}}]}', "metrics[0] (a).query.metricName"),
])
def test_bad_json_exits_2_with_one_line(tmp_path: Path, content: str, problem: str) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    proc = cli("import", "kayenta", str(bad))
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and str(bad) in lines[0] and problem in lines[0]
    assert "Traceback" not in proc.stderr


def test_missing_file_exits_2(tmp_path: Path) -> None:
    proc = cli("import", "kayenta", str(tmp_path / "nope.json"))
    assert proc.returncode == 2 and "nope.json: cannot read: No such file or directory" in proc.stderr


def test_example_json_is_kayentas_file_unchanged() -> None:
    """The example is Kayenta's config as published; the converter reads it as NetflixACAJudge would."""
    doc = json.loads(EXAMPLE.read_text())
    assert doc["judge"]["name"] == "NetflixACAJudge-v1.0"
    cfg = config_from_dict(doc, doc["classifier"]["scoreThresholds"])
    ours = kayenta_config(parse_spec(yaml.safe_load(CONVERTED.read_text())).analysis.kayenta)
    assert ours == cfg
