"""Kayenta's scoring: `WeightedSumScorer` and `ThresholdScoreClassifier` (`judge/scorers`, `classifiers/score`).

The scorer takes classified results (muted ones already dropped, as `ScoringHelper` does) and gives group scores
and the summary score; the classifier turns the summary score into Pass / Marginal / Fail.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Protocol

from analyzer.stats.kayenta_classifiers import HIGH, LOW, NODATA, NODATA_FAIL, PASS

SUMMARY_PASS, SUMMARY_MARGINAL, SUMMARY_FAIL = "Pass", "Marginal", "Fail"
NODATA_THRESHOLD = 50  # percent of Nodata results that zeroes the score


class Classified(Protocol):
    """What the scorer reads from a metric result (Kayenta's CanaryAnalysisResult)."""

    @property
    def name(self) -> str: ...
    @property
    def classification(self) -> str: ...
    @property
    def reason(self) -> str | None: ...
    @property
    def critical(self) -> bool: ...
    @property
    def groups(self) -> tuple[str, ...]: ...


@dataclass(frozen=True)
class GroupScore:
    name: str
    score: float
    no_data: bool
    label_counts: Mapping[str, int]
    num_metrics: int


@dataclass(frozen=True)
class ScoreResult:
    group_scores: tuple[GroupScore, ...]
    summary_score: float
    num_metrics: int
    reason: str | None


@dataclass(frozen=True)
class ScoreClassification:
    classification: str  # Pass | Marginal | Fail
    reason: str | None
    score: float


def round_half_up(value: float, places: int = 2) -> float:
    """commons-math `Precision.round`: half-up on the decimal form of the double (not banker's rounding)."""
    return float(Decimal(repr(value)).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP))


class WeightedSumScorer:
    def __init__(self, group_weights: Mapping[str, float]) -> None:
        self.group_weights = {str(k): float(v) for k, v in group_weights.items()}

    @staticmethod
    def _group_score(name: str, labels: list[str]) -> GroupScore:
        counts = {label: labels.count(label) for label in dict.fromkeys(labels)}
        num_pass = counts.get(PASS, 0)
        total = num_pass + counts.get(HIGH, 0) + counts.get(LOW, 0) + counts.get(NODATA_FAIL, 0)
        if total == 0:  # Nodata and Error do not count
            return GroupScore(name, 0.0, True, counts, len(labels))
        return GroupScore(name, num_pass / float(total) * 100, False, counts, len(labels))

    def _summary_score(self, groups: Sequence[GroupScore]) -> float:
        weight_sum = sum(self.group_weights.values())
        unweighted = {g.name for g in groups} - set(self.group_weights)
        share = (100 - weight_sum) / len(unweighted) if unweighted else 0.0
        total = 0.0
        for g in groups:
            effective = 100.0 if g.no_data else g.score
            total += effective * (self.group_weights.get(g.name, share) / 100)
        return round_half_up(total, 2)

    def score(self, results: Sequence[Classified]) -> ScoreResult:
        labels: dict[str, list[str]] = {}
        for r in results:
            for g in r.groups:
                labels.setdefault(g, []).append(r.classification)
        groups = tuple(self._group_score(name, ls) for name, ls in labels.items())
        failures = [r for r in results if r.critical and r.classification != PASS]
        if failures:
            return ScoreResult(groups, 0.0, len(results), f"Canary Failed: {failures[0].reason}")
        nodata = sum(r.classification == NODATA for r in results)
        # 0/0 in Kayenta is NaN, which is not >= 50: no results is not "too many Nodata".
        if results and nodata / len(results) * 100 >= NODATA_THRESHOLD:
            return ScoreResult(groups, 0.0, len(results),
                               f"Canary Failed: {NODATA_THRESHOLD}% or more metrics returned {NODATA.upper()}")
        return ScoreResult(groups, self._summary_score(groups), len(results), None)


class ThresholdScoreClassifier:
    def __init__(self, pass_threshold: float, warning_threshold: float) -> None:
        self.pass_threshold = pass_threshold
        self.warning_threshold = warning_threshold

    def classify(self, score_results: ScoreResult) -> ScoreClassification:
        score = score_results.summary_score
        if score >= self.pass_threshold:
            label = SUMMARY_PASS
        elif score >= self.warning_threshold:
            label = SUMMARY_MARGINAL
        else:
            label = SUMMARY_FAIL
        return ScoreClassification(label, score_results.reason, score)
