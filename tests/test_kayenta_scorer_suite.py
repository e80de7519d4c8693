"""Port of Kayenta's `kayenta-judge/src/test/scala/com/netflix/kayenta/judge/ScorerSuite.scala`."""

from dataclasses import dataclass

from analyzer.stats.kayenta_classifiers import HIGH, LOW, NODATA, PASS
from analyzer.stats.kayenta_scoring import WeightedSumScorer


@dataclass(frozen=True)
class Result:
    """Kayenta's CanaryAnalysisResult builder: name, classification, groups, critical."""

    name: str
    classification: str
    groups: tuple[str, ...]
    critical: bool = False
    reason: str | None = None


def test_single_metric_pass() -> None:
    """ScorerSuite.scala, test "Weighted Sum Group Scorer: Single Metric Pass"."""
    scores = WeightedSumScorer({}).score([Result("test-metric-pass", PASS, ("test-group",))])
    assert scores.summary_score == 100.0


def test_single_metric_fail() -> None:
    """ScorerSuite.scala, test "Weighted Sum Group Scorer: Single Metric Fail"."""
    scores = WeightedSumScorer({}).score([Result("test-metric-high", HIGH, ("test-group",))])
    assert scores.summary_score == 0.0


def test_single_group_nodata() -> None:
    """ScorerSuite.scala, test "Weighted Sum Group Scorer: Single group Nodata"."""
    scores = WeightedSumScorer({}).score([Result("test-metric-nodata", NODATA, ("test-group-nodata",))])
    assert len(scores.group_scores) == 1
    assert scores.group_scores[0].score == 0.0
    assert scores.summary_score == 0.0


def test_two_groups_one_pass_one_nodata() -> None:
    """ScorerSuite.scala, test "Weighted Sum Group Scorer: Two Groups, one Pass, one Nodata"."""
    scores = WeightedSumScorer({}).score([
        Result("test-metric-pass1a", PASS, ("test-group-pass",)),
        Result("test-metric-pass1b", PASS, ("test-group-pass",)),
        Result("test-metric-nodata", NODATA, ("test-group-nodata",)),
    ])
    assert len(scores.group_scores) == 2
    assert sorted(g.score for g in scores.group_scores) == [0.0, 100.0]
    assert scores.summary_score == 100.0


def test_one_group_two_metrics() -> None:
    """ScorerSuite.scala, test "Weighted Sum Group Scorer: One Group, Two Metrics"."""
    scores = WeightedSumScorer({}).score([Result("test-metric-pass", PASS, ("test-group",)),
                                          Result("test-metric-high", HIGH, ("test-group",))])
    assert scores.summary_score == 50.0


def test_one_group_three_metrics() -> None:
    """ScorerSuite.scala, test "Weighted Sum Group Scorer: One Group, Three Metrics"."""
    scores = WeightedSumScorer({}).score([Result("test-metric-pass", PASS, ("test-group",)),
                                          Result("test-metric-high", HIGH, ("test-group",)),
                                          Result("test-metric-low", LOW, ("test-group",))])
    assert scores.summary_score == 33.33


def test_two_groups_three_metrics() -> None:
    """ScorerSuite.scala, test "Weighted Sum Group Scorer: Two Groups, Three Metrics"."""
    scores = WeightedSumScorer({"group-1": 75.0, "group-2": 25.0}).score([
        Result("test-metric-pass-1", PASS, ("group-1",)),
        Result("test-metric-pass-2", PASS, ("group-1",)),
        Result("test-metric-fail", HIGH, ("group-2",)),
    ])
    assert scores.summary_score == 75.0


def test_two_groups_three_metrics_equal_weight() -> None:
    """ScorerSuite.scala, test "Weighted Sum Group Scorer: Two Groups, Three Metrics (Equal Weight)"."""
    scores = WeightedSumScorer({"group-1": 50.0, "group-2": 50.0}).score([
        Result("test-metric-pass", PASS, ("group-1",)),
        Result("test-metric-fail-1", HIGH, ("group-1",)),
        Result("test-metric-fail-2", HIGH, ("group-2",)),
    ])
    assert scores.summary_score == 25.0


def test_two_groups_three_metrics_equal_weight_one_nodata() -> None:
    """ScorerSuite.scala, test "Weighted Sum Group Scorer: Two Groups, Three Metrics (Equal Weight), one NoData"."""
    scores = WeightedSumScorer({"group-1": 50.0, "group-2": 50.0}).score([
        Result("test-metric-pass", PASS, ("group-1",)),
        Result("test-metric-nodata", NODATA, ("group-1",)),
        Result("test-metric-fail", HIGH, ("group-2",)),
    ])
    assert scores.summary_score == 50.0


def test_one_good_normal_one_fail_critical() -> None:
    """ScorerSuite.scala, test "Weighted Sum Group Scorer: Two Metrics, one good (normal), one fail (critical)"."""
    scores = WeightedSumScorer({}).score([Result("test-metric-pass", PASS, ("test-group",)),
                                          Result("test-metric-high", HIGH, ("test-group",), critical=True)])
    assert scores.summary_score == 0.0


def test_one_low_normal_one_good_critical() -> None:
    """ScorerSuite.scala, test "Weighted Sum Group Scorer: Two Metrics, one low (normal), one good (critical)"."""
    scores = WeightedSumScorer({}).score([Result("test-metric-low", LOW, ("test-group",), critical=False),
                                          Result("test-metric-pass2", PASS, ("test-group",), critical=True)])
    assert scores.summary_score == 50.0


def test_one_good_normal_one_nodata_critical() -> None:
    """ScorerSuite.scala, test "Weighted Sum Group Scorer: Two Metrics, one good (normal), one nodata (critical)"."""
    scores = WeightedSumScorer({}).score([Result("test-metric-pass", PASS, ("test-group",)),
                                          Result("test-metric-nodata", NODATA, ("test-group",), critical=True)])
    assert scores.summary_score == 0.0


def test_two_groups_unequal_weight_four_metrics() -> None:
    """ScorerSuite.scala, test "Weighted Sum Group Scorer: Two Groups (Unequal Weight), Four Metrics"."""
    scores = WeightedSumScorer({"group1": 15.0, "group2": 85.0}).score([
        Result("test-metric-high", HIGH, ("group1",)),
        Result("test-metric-low", LOW, ("group1",)),
        Result("test-metric-pass", PASS, ("group1",)),
        Result("test-metric-pass2", HIGH, ("group2",)),
    ])
    assert scores.summary_score == 5.0
