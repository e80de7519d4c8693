"""Hand-worked cases for the NetflixACAJudge re-implementation (peers.md §b)."""

import math

import numpy as np
import pytest

from analyzer.stats.kayenta import (
    ERROR,
    HIGH,
    LOW,
    NODATA,
    NODATA_FAIL,
    PASS,
    SUMMARY_FAIL,
    SUMMARY_MARGINAL,
    SUMMARY_PASS,
    KayentaConfig,
    MetricConfig,
    MetricResult,
    classify_metric,
    config_from_dict,
    judge,
    preprocess,
    score,
)
from analyzer.stats.kayenta_transforms import JavaRandom

C = np.arange(10.0, 30.0)  # 20 distinct control points


def _labelled(name: str, label: str, groups: tuple[str, ...] = ("g",), critical: bool = False,
              muted: bool = False) -> MetricResult:
    return MetricResult(name, label, "", critical, groups, muted, math.nan, math.nan)


# ---- classification ----


def test_identical_data_pass() -> None:
    r = classify_metric(C, C[::-1], MetricConfig("m"))
    assert (r.classification, r.reason, r.ratio) == (PASS, "The Canary and Baseline data are identical", 1.0)


def test_clear_increase_is_high() -> None:
    # Every pairwise difference E − C lies in [81, 119], so L ≥ 81 > 0.25·|Ĥ| = 25; ratio 5.3 ≥ 1.0.
    r = classify_metric(C, C + 100, MetricConfig("m", direction="increase"))
    assert r.classification == HIGH
    assert r.estimate == pytest.approx(100.0)
    assert 81 <= r.lower <= 100 <= r.upper <= 119


def test_decrease_only_matters_in_its_direction() -> None:
    control, experiment = C + 100, C  # experiment lower by 100
    assert classify_metric(control, experiment, MetricConfig("m", direction="increase")).classification == PASS
    assert classify_metric(control, experiment, MetricConfig("m", direction="either")).classification == LOW
    assert classify_metric(control, experiment, MetricConfig("m", direction="decrease")).classification == LOW


def test_missing_data_labels() -> None:
    nan20 = np.full(20, np.nan)
    assert classify_metric(C, [], MetricConfig("m")).classification == NODATA
    assert classify_metric(C, nan20, MetricConfig("m")).classification == NODATA  # remove drops every point
    assert classify_metric(C, [], MetricConfig("m", must_have_data=True)).classification == NODATA_FAIL
    crit = classify_metric(C, [], MetricConfig("m", must_have_data=True, critical=True))
    assert (crit.classification, crit.critical) == (NODATA, True)
    # The `replace` gotcha: an absent series passes silently.
    assert classify_metric(C, [], MetricConfig("m", nan_strategy="replace")).classification == PASS


def test_replace_turns_nan_into_zero() -> None:
    a = preprocess([1.0, np.nan, 3.0], MetricConfig("m", nan_strategy="replace"))
    assert a.tolist() == [1.0, 0.0, 3.0]
    assert preprocess([1.0, np.nan, 3.0], MetricConfig("m")).tolist() == [1.0, 3.0]


def test_effect_size_gate_keeps_small_significant_shift_as_pass() -> None:
    control = np.arange(1000.0, 1020.0)
    experiment = control + 40  # MW CI [35, 45] clears the ±10 band, but the mean ratio is only 1049.5/1009.5
    strict = classify_metric(control, experiment, MetricConfig("m"))
    gated = classify_metric(control, experiment, MetricConfig("m", allowed_increase=1.1))
    assert strict.classification == HIGH
    assert gated.classification == PASS
    assert gated.ratio == pytest.approx(1049.5 / 1009.5)
    assert gated.lower > 0.25 * abs(gated.estimate)


def test_tolerance_band_hides_a_significant_but_wide_shift() -> None:
    # spinnaker#6278: 7×100 then 3×1 against all-1 control. Ĥ ≈ 99 but L is tiny, so L < 0.25·Ĥ: Pass.
    r = classify_metric([1.0] * 10, [100.0] * 7 + [1.0] * 3, MetricConfig("m", direction="increase"))
    assert r.classification == PASS
    assert r.lower < 0.25 * abs(r.estimate)


def test_outlier_removal_drops_spike_and_changes_label() -> None:
    control = np.arange(100.0, 120.0)
    experiment = np.concatenate((np.arange(110.0, 130.0), [1e5]))
    # P99 of experiment = 129 + 0.8·(1e5 − 129) ≈ 8.0e4 < 1e5, and Q3 + 3·IQR = 155: the spike goes.
    kept = preprocess(experiment, MetricConfig("m", outlier_strategy="remove"))
    assert kept.tolist() == list(range(110, 130))
    keep = classify_metric(control, experiment, MetricConfig("m", allowed_increase=1.5))
    drop = classify_metric(control, experiment, MetricConfig("m", allowed_increase=1.5, outlier_strategy="remove"))
    assert keep.classification == HIGH  # the spike inflates the mean ratio to ~44
    assert drop.classification == PASS  # ratio 119.5/109.5 < 1.5
    assert drop.experiment is not None and drop.experiment.count == 20


def test_two_different_constants_are_jittered_and_classified() -> None:
    r = classify_metric([3.0] * 10, [5.0] * 10, MetricConfig("m"), rng=JavaRandom(0))
    assert r.classification == HIGH
    assert r.estimate == pytest.approx(2.0, abs=1e-3)


def test_single_value_everywhere_passes_and_one_point_each_errors() -> None:
    assert classify_metric([4.0, 4.0], [4.0], MetricConfig("m")).reason == "All Canary and Baseline values are the same"
    # One point per side: at μmin the two points tie, σ = 0, so the classification fails (Error).
    assert classify_metric([3.0], [5.0], MetricConfig("m")).classification == ERROR


def test_critical_escalation_depends_on_critical_threshold() -> None:
    mild = classify_metric(C, C + 100, MetricConfig("m", critical=True, critical_increase=10.0))
    severe = classify_metric(C, C + 100, MetricConfig("m", critical=True, critical_increase=2.0))
    assert (mild.classification, mild.critical) == (HIGH, False)  # ratio 5.3 < 10
    assert (severe.classification, severe.critical) == (HIGH, True)


def test_cles_effect_size() -> None:
    r = classify_metric(C, C + 100, MetricConfig("m", effect_measure="cles"))
    assert r.effect_size == pytest.approx(1.0)  # every canary point exceeds every baseline point
    assert r.classification == HIGH


# ---- scoring ----


def test_critical_failure_zeroes_the_score() -> None:
    cfg = KayentaConfig(metrics=(MetricConfig("crit", groups=("g",), critical=True), MetricConfig("ok", groups=("g",))))
    j = judge({"crit": (C, C + 100), "ok": (C, C)}, cfg)
    assert j.score == 0.0
    assert j.classification == SUMMARY_FAIL
    assert j.reason == "Canary Failed: The metric crit was classified as High (Critical)"


def test_group_weights_arithmetic() -> None:
    cfg = KayentaConfig(metrics=(), group_weights={"errors": 60, "latency": 40})
    results = [_labelled("e1", PASS, ("errors",)), _labelled("e2", HIGH, ("errors",)),
               _labelled("l1", PASS, ("latency",))]
    j = score(results, cfg)
    assert {g.name: g.score for g in j.groups} == {"errors": 50.0, "latency": 100.0}
    assert j.score == pytest.approx(0.6 * 50 + 0.4 * 100)  # 70
    assert j.classification == SUMMARY_MARGINAL


def test_unweighted_groups_share_the_rest_and_nodata_groups_count_full() -> None:
    cfg = KayentaConfig(metrics=(), group_weights={"a": 50})
    results = [_labelled("a1", PASS, ("a",)), _labelled("b1", HIGH, ("b",)), _labelled("c1", PASS, ("c",)),
               _labelled("c2", LOW, ("c",))]
    # a = 100·0.5, b = 0·0.25, c = 50·0.25
    assert score(results, cfg).score == pytest.approx(62.5)
    # A group holding only an Error result has no data and counts as 100.
    with_error = [_labelled("x", ERROR, ("x",)), _labelled("y", HIGH, ("y",))]
    j = score(with_error, KayentaConfig(metrics=()))
    assert next(g for g in j.groups if g.name == "x").no_data
    assert j.score == pytest.approx(50.0)


def test_metric_in_two_groups_counts_in_both() -> None:
    j = score([_labelled("m", HIGH, ("a", "b")), _labelled("n", PASS, ("a",))], KayentaConfig(metrics=()))
    assert {g.name: g.score for g in j.groups} == {"a": 50.0, "b": 0.0}
    assert j.score == pytest.approx(25.0)


@pytest.mark.parametrize(("n_pass", "n_high", "want_score", "want_label"), [
    (3, 1, 75.0, SUMMARY_PASS),  # exactly pass
    (2, 2, 50.0, SUMMARY_MARGINAL),  # exactly marginal is still Marginal
    (1, 3, 25.0, SUMMARY_FAIL),
])
def test_pass_and_marginal_thresholds(n_pass: int, n_high: int, want_score: float, want_label: str) -> None:
    results = [_labelled(f"p{i}", PASS) for i in range(n_pass)] + [_labelled(f"h{i}", HIGH) for i in range(n_high)]
    j = score(results, KayentaConfig(metrics=()))
    assert (j.score, j.classification) == (want_score, want_label)


def test_half_nodata_zeroes_and_muted_is_ignored() -> None:
    half = score([_labelled("a", NODATA), _labelled("b", PASS)], KayentaConfig(metrics=()))
    assert half.score == 0.0
    muted = score([_labelled("a", HIGH, muted=True), _labelled("b", PASS)], KayentaConfig(metrics=()))
    assert muted.score == 100.0
    assert len(muted.metrics) == 2  # muted results are still reported


def test_nodatafailmetric_counts_as_a_failure() -> None:
    j = score([_labelled("a", NODATA_FAIL), _labelled("b", PASS)], KayentaConfig(metrics=()))
    assert j.score == 50.0


# ---- config JSON ----


def test_config_from_canary_config_json() -> None:
    doc = {
        "name": "reviews-istio",
        "judge": {"name": "NetflixACAJudge-v1.0", "judgeConfigurations": {}},
        "metrics": [{
            "name": "error_ratio",
            "query": {"type": "prometheus", "customInlineTemplate": "PromQL:up"},
            "groups": ["errors"],
            "analysisConfigurations": {"canary": {
                "direction": "increase", "nanStrategy": "replace", "critical": True,
                "effectSize": {"allowedIncrease": 1.1, "criticalIncrease": 2.0},
                "outliers": {"strategy": "remove", "outlierFactor": 2.5}}},
            "scopeName": "default",
        }, {"name": "p99", "groups": ["latency"], "analysisConfigurations": {"canary": {"nanStrategy": "none"}}}],
        "classifier": {"groupWeights": {"errors": 60, "latency": 40}},
    }
    cfg = config_from_dict(doc, {"pass": 90, "marginal": 60})
    err, p99 = cfg.metrics
    assert (err.direction, err.nan_strategy, err.critical, err.groups) == ("increase", "replace", True, ("errors",))
    assert (err.gate(err.allowed_increase), err.gate(err.critical_increase), err.gate(err.allowed_decrease)) == (
        1.1, 2.0, 1.0)
    assert (err.outlier_strategy, err.outlier_factor) == ("remove", 2.5)
    assert (p99.direction, p99.nan_strategy) == ("either", "remove")  # "none" parses to remove
    assert dict(cfg.group_weights) == {"errors": 60.0, "latency": 40.0}
    assert (cfg.pass_threshold, cfg.marginal_threshold) == (90.0, 60.0)
