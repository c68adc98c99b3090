"""How much a test split can tell: intervals, the paired test and the gate's three outcomes (pure core)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from medimage.core import evidence
from medimage.core.gate import Champion, GateConfig, decide
from medimage.core.metrics import evaluate
from medimage.core.test_metrics import TestMetrics

LABELS = ("normal", "pneumonia")
NORMAL, PNEUMONIA = 0, 1


def split(truth: list[int], predicted: list[int]) -> dict:
    """One split of evaluation.json, as the trainer writes it, with the per-image results."""
    probabilities = np.eye(len(LABELS))[predicted]
    return {**evaluate(truth, probabilities, LABELS), "truth": truth, "predicted": predicted}


def measured(truth: list[int], predicted: list[int], manifest: str = "v1") -> TestMetrics:
    return TestMetrics.from_evaluation(split(truth, predicted), manifest)


def pair(
    both_right: int, only_challenger: int, only_champion: int, both_wrong: int
) -> tuple[TestMetrics, Champion]:
    """Challenger and champion on the same normal images, with these agreement counts."""
    n = both_right + only_challenger + only_champion + both_wrong
    truth = [NORMAL] * n
    wrong = PNEUMONIA
    challenger = [NORMAL] * (both_right + only_challenger) + [wrong] * (only_champion + both_wrong)
    champion = (
        [NORMAL] * both_right + [wrong] * only_challenger + [NORMAL] * only_champion + [wrong] * both_wrong
    )
    return measured(truth, challenger), Champion("old", measured(truth, champion))


ACCURACY_ONLY = GateConfig(min_accuracy=0.8)


def test_wilson_intervals_match_known_values():
    forty_of_fifty = evidence.wilson(40, 50)
    assert forty_of_fifty.low == pytest.approx(0.6696, abs=1e-4)
    assert forty_of_fifty.high == pytest.approx(0.8876, abs=1e-4)
    none_of_ten, all_of_ten = evidence.wilson(0, 10), evidence.wilson(10, 10)
    assert none_of_ten.low == 0.0 and none_of_ten.high == pytest.approx(0.2775, abs=1e-4)
    assert all_of_ten.high == 1.0 and all_of_ten.low == pytest.approx(0.7225, abs=1e-4)
    with pytest.raises(ValueError):
        evidence.wilson(11, 10)


def test_mcnemar_exact_p_values_on_known_discordant_counts():
    assert evidence.mcnemar_p(0, 6) == pytest.approx(2 / 64)
    assert evidence.mcnemar_p(2, 10) == pytest.approx(2 * (1 + 12 + 66) / 4096)
    assert evidence.mcnemar_p(10, 2) == evidence.mcnemar_p(2, 10)
    assert evidence.mcnemar_p(5, 5) == 1.0 and evidence.mcnemar_p(0, 0) == 1.0


def test_the_binomial_tail_is_exact_on_small_counts_and_fast_on_huge_ones():
    from math import comb

    assert evidence.binomial_tail(3, 9) == pytest.approx(sum(comb(9, i) for i in range(4)) / 2**9)
    assert evidence.binomial_tail(7, 9) == pytest.approx(1 - (comb(9, 8) + 1) / 2**9)
    started = time.monotonic()
    assert evidence.binomial_tail(4_990_000, 10_000_000) == pytest.approx(1.3e-10, rel=0.2)
    assert time.monotonic() - started < 0.5


def test_the_images_needed_are_where_the_interval_at_the_observed_rate_would_decide():
    needed = evidence.n_to_fall_below(0.875, 0.9)
    assert evidence.wilson_bounds(0.875, needed)[1] < 0.9 <= evidence.wilson_bounds(0.875, needed - 1)[1]
    perfect = evidence.n_to_clear(1.0, 0.9)
    assert evidence.wilson(perfect, perfect).low >= 0.9 > evidence.wilson(perfect - 1, perfect - 1).low


def test_a_recall_of_0_875_on_40_pneumonia_images_is_insufficient_evidence_not_a_failure():
    # The measured case: accuracy 0.930, pneumonia recall 35 of 40 under the preset's 0.90 floor.
    truth = [NORMAL] * 80 + [PNEUMONIA] * 40
    predicted = [NORMAL] * 77 + [PNEUMONIA] * 3 + [PNEUMONIA] * 35 + [NORMAL] * 5
    challenger = measured(truth, predicted)
    config = GateConfig(min_accuracy=0.8, min_recall={"pneumonia": 0.9})
    decision = decide(challenger, config, None)
    assert decision.outcome == "insufficient_evidence" and not decision.passed
    check = {c.name: c for c in decision.checks}["min_recall:pneumonia"]
    assert check.evidence["interval"]["low"] < 0.9 < check.evidence["interval"]["high"]
    needed = evidence.n_to_fall_below(0.875, 0.9)
    assert decision.class_images_needed == {"pneumonia": needed}
    assert decision.images_needed == -(-needed * 120 // 40)  # the whole split, at this class's share
    assert "cannot tell" in decision.reasons[0]
    as_json = decision.to_dict()
    assert as_json["outcome"] == "insufficient_evidence" and as_json["passed"] is False
    assert as_json["intervals"]["recall"]["pneumonia"]["n"] == 40


def test_a_recall_clearly_under_its_floor_fails():
    truth = [NORMAL] * 200 + [PNEUMONIA] * 200
    predicted = [NORMAL] * 200 + [PNEUMONIA] * 140 + [NORMAL] * 60  # pneumonia recall 0.70
    decision = decide(measured(truth, predicted), GateConfig(0.5, {"pneumonia": 0.9}), None)
    assert decision.outcome == "fail" and decision.images_needed is None


def test_a_floor_cleared_by_its_point_estimate_passes_and_says_how_strongly():
    truth = [NORMAL] * 60 + [PNEUMONIA] * 40
    predicted = [NORMAL] * 60 + [PNEUMONIA] * 38 + [NORMAL] * 2  # 0.95 on 40: interval reaches under 0.9
    decision = decide(measured(truth, predicted), GateConfig(0.8, {"pneumonia": 0.9}), None)
    assert decision.outcome == "pass"
    checks = {c.name: c for c in decision.checks}
    assert checks["min_recall:pneumonia"].evidence["cleared_with_evidence"] is False
    assert checks["min_accuracy"].evidence["cleared_with_evidence"] is True


def test_a_class_without_test_images_is_insufficient_evidence_with_the_images_it_needs():
    truth, predicted = [NORMAL] * 50, [NORMAL] * 50
    decision = decide(measured(truth, predicted), GateConfig(0.8, {"pneumonia": 0.9}), None)
    assert decision.outcome == "insufficient_evidence"
    assert decision.class_images_needed == {"pneumonia": evidence.n_to_clear(1.0, 0.9)}
    assert decision.images_needed == 50 + evidence.n_to_clear(1.0, 0.9)


def test_a_clear_regression_against_the_champion_on_2000_images_fails():
    challenger, champion = pair(both_right=1780, only_challenger=20, only_champion=80, both_wrong=120)
    decision = decide(challenger, ACCURACY_ONLY, champion)
    assert (challenger.accuracy, champion.metrics.accuracy) == (0.9, 0.93)
    assert decision.outcome == "fail" and {c.name for c in decision.checks if not c.passed} == {"champion"}
    paired = decision.to_dict()["paired"]
    assert paired["challenger_only_right"] == 20 and paired["champion_only_right"] == 80
    assert paired["p_value"] < 1e-6 and paired["significant"] is True
    assert paired["difference"] == pytest.approx(-0.03) and paired["difference_high"] < 0


def test_a_clear_win_over_the_champion_passes():
    challenger, champion = pair(both_right=1780, only_challenger=80, only_champion=20, both_wrong=120)
    decision = decide(challenger, ACCURACY_ONLY, champion)
    assert decision.outcome == "pass" and decision.paired is not None and decision.paired.significant
    assert decision.to_dict()["paired"]["difference_low"] > 0


def test_a_small_unproven_drop_against_the_champion_is_insufficient_evidence():
    challenger, champion = pair(both_right=540, only_challenger=10, only_champion=15, both_wrong=35)
    decision = decide(challenger, ACCURACY_ONLY, champion)
    assert decision.outcome == "insufficient_evidence" and decision.class_images_needed == {}
    needed = decision.images_needed
    assert needed is not None and needed > 600
    # At that size, with the same shares of disagreements, the drop would be significant.
    scale = needed / 600
    wins = round(10 * scale)
    assert evidence.mcnemar_p(wins, round(25 * scale) - wins) < evidence.ALPHA


def test_evidence_of_a_failure_outweighs_an_undecided_check():
    truth = [NORMAL] * 80 + [PNEUMONIA] * 40
    predicted = [NORMAL] * 40 + [PNEUMONIA] * 40 + [PNEUMONIA] * 35 + [NORMAL] * 5  # accuracy 0.625
    decision = decide(measured(truth, predicted), GateConfig(0.9, {"pneumonia": 0.9}), None)
    assert decision.outcome == "fail" and decision.images_needed is None


def test_per_image_results_must_be_on_the_same_images():
    challenger = measured([NORMAL, PNEUMONIA], [NORMAL, PNEUMONIA])
    other = measured([PNEUMONIA, NORMAL], [NORMAL, PNEUMONIA])
    with pytest.raises(ValueError, match="same images"):
        decide(challenger, GateConfig(0.0), Champion("old", other))


def test_per_image_results_are_read_but_not_stored_with_the_figures():
    challenger = measured([NORMAL, PNEUMONIA, PNEUMONIA], [NORMAL, PNEUMONIA, NORMAL])
    assert challenger.has_predictions and challenger.support == {"normal": 1, "pneumonia": 2}
    stored = challenger.to_dict()
    assert (
        "truth" not in stored
        and "predicted" not in stored
        and stored["support"] == {"normal": 1, "pneumonia": 2}
    )
    assert TestMetrics.from_dict(stored) == challenger and not TestMetrics.from_dict(stored).has_predictions


def test_logs_name_the_outcome_and_the_images_needed():
    from medimage.core.gate import verdict

    assert verdict({"passed": True, "outcome": "pass"}) == "PASSED"
    assert verdict({"passed": False}) == "REJECTED"
    undecided = {"passed": False, "outcome": "insufficient_evidence", "images_needed": 1662}
    assert verdict(undecided) == "INSUFFICIENT_EVIDENCE (about 1662 test images needed)"


def test_figures_without_a_count_are_judged_on_their_value_alone():
    # The trainer refuses an empty test split; a stand-in that reports n=0 gets the figure-only rule.
    uncounted = TestMetrics("v1", 0.95, {"normal": 0.95, "pneumonia": 0.95}, LABELS, 0)
    decision = decide(uncounted, GateConfig(0.9, {"pneumonia": 0.9}), None)
    assert decision.outcome == "pass" and "accuracy" not in decision.to_dict()["intervals"]
