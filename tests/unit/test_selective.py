"""Selective prediction arithmetic on known probabilities (pure numpy, no model)."""

from __future__ import annotations

import numpy as np
import pytest

from medimage.core.selective import (
    choose_threshold,
    class_thresholds,
    curve,
    fit_review,
    sampled_curve,
    select,
)

# Six predictions over two classes: confidences 0.95, 0.9, 0.8, 0.7, 0.6, 0.55; the 0.8 and 0.55 ones wrong.
PROBS = np.array([[0.95, 0.05], [0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4], [0.45, 0.55]])
TRUTH = np.array([0, 1, 1, 1, 0, 0])


def test_select_keeps_the_confident_predictions_and_scores_only_them():
    chosen = select(PROBS, TRUTH, 0.75)
    assert (chosen.kept, chosen.n) == (3, 6)
    assert chosen.coverage == 0.5
    assert chosen.accuracy_above == pytest.approx(2 / 3, abs=1e-6)


def test_a_threshold_equal_to_a_confidence_keeps_that_prediction():
    assert select(PROBS, TRUTH, 0.9).kept == 2


def test_a_threshold_above_every_confidence_keeps_nothing_and_has_no_accuracy():
    chosen = select(PROBS, TRUTH, 0.99)
    assert (chosen.kept, chosen.coverage, chosen.accuracy_above) == (0, 0.0, None)


def test_the_curve_walks_from_the_most_confident_to_full_coverage():
    points = curve(PROBS, TRUTH)
    assert [p.kept for p in points] == [1, 2, 3, 4, 5, 6]
    assert [p.accuracy_above for p in points] == pytest.approx([1.0, 1.0, 2 / 3, 0.75, 0.8, 4 / 6], abs=1e-6)
    assert points[-1].coverage == 1.0 and points[-1].threshold == pytest.approx(0.55)


def test_tied_confidences_are_kept_or_referred_together():
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4]])
    points = curve(probs, np.array([0, 1, 0]))
    assert [p.kept for p in points] == [2, 3]


def test_the_threshold_is_the_lowest_that_reaches_the_target():
    # 1.0 is reached down to 0.9 (2 kept); 0.8 reaches 0.8 at confidence 0.6 (5 kept).
    assert choose_threshold(PROBS, TRUTH, 1.0)["threshold"] == pytest.approx(0.9)
    review = choose_threshold(PROBS, TRUTH, 0.8)
    assert review["threshold"] == pytest.approx(0.6)
    assert (review["kept"], review["coverage"], review["reached"]) == (
        5,
        pytest.approx(5 / 6, abs=1e-6),
        True,
    )


def test_an_unreachable_target_refers_everything_but_certain_predictions():
    probs = np.array([[0.6, 0.4], [0.7, 0.3]])
    review = choose_threshold(probs, np.array([1, 1]), 0.9)
    assert review["threshold"] == 1.0 and review["reached"] is False and review["kept"] == 0


def test_bad_targets_and_shapes_are_refused():
    with pytest.raises(ValueError, match="target accuracy"):
        choose_threshold(PROBS, TRUTH, 0.0)
    with pytest.raises(ValueError, match="n x classes"):
        select(PROBS[:, 0], TRUTH, 0.5)
    with pytest.raises(ValueError, match="no predictions"):
        select(np.zeros((0, 2)), np.zeros(0), 0.5)


def test_the_sampled_curve_is_short_and_ends_at_full_coverage():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet([1, 1, 1], size=500)
    truth = rng.integers(0, 3, 500)
    points = sampled_curve(probs, truth, points=25)
    assert len(points) <= 25 and points[-1]["coverage"] == 1.0
    coverages = [p["coverage"] for p in points]
    assert coverages == sorted(coverages)


def test_the_review_threshold_is_fitted_on_clean_and_shifted_validation_pooled():
    # Clean: three images, all right (confidences 0.9, 0.8, 0.7). Under a shift the same images come out
    # 0.95 right, 0.85 WRONG, 0.6 right: the clean fit alone would keep the confident mistake.
    clean = np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3]])
    truth = np.array([0, 1, 0])
    shifted = {"darker": np.array([[0.95, 0.05], [0.85, 0.15], [0.6, 0.4]])}
    assert choose_threshold(clean, truth, 1.0)["threshold"] == pytest.approx(0.7)
    review = fit_review(clean, truth, shifted, 1.0, ["a", "b"])
    # Pooled, the lowest threshold at accuracy 1.0 is above the 0.85 mistake: 0.9 keeps 0.95 and 0.9.
    assert review["threshold"] == pytest.approx(0.9) and review["reached"] is True
    assert (review["kept"], review["n"], review["coverage"]) == (1, 3, pytest.approx(1 / 3, abs=1e-6))
    assert review["pooled"] == {
        "coverage": pytest.approx(2 / 6, abs=1e-6),
        "accuracy_above": 1.0,
        "kept": 2,
        "n": 6,
    }
    assert review["shifted_mean_coverage"] == pytest.approx(1 / 3, abs=1e-6)
    assert review["shifted_mean_accuracy_above"] == 1.0
    assert "1 acquisition shifts" in review["fitted_on"]


def test_a_threshold_per_class_keeps_each_prediction_by_the_class_it_names():
    # Class 0 needs 0.85, class 1 needs 0.6: 0.95 (0) and 0.9, 0.7 (1) are kept; 0.8 and 0.6 (0) and
    # 0.55 (1) are not.
    chosen = select(PROBS, TRUTH, [0.85, 0.6])
    assert (chosen.kept, chosen.accuracy_above, chosen.threshold) == (3, 1.0, [0.85, 0.6])
    with pytest.raises(ValueError, match="one per class"):
        select(PROBS, TRUTH, [0.5, 0.5, 0.5])


def test_class_thresholds_make_each_label_reach_the_target_and_never_fall_below_the_floor():
    # "normal" (0) is given at 0.99, 0.97 (right) and 0.95, 0.93 (wrong: pneumonia called normal), then
    # 0.9 (right); "pneumonia" (1) at 0.96, 0.94, 0.92, all right.
    probs = np.array(
        [[0.99, 0.01], [0.97, 0.03], [0.95, 0.05], [0.93, 0.07], [0.9, 0.1], [0.04, 0.96], [0.06, 0.94],
         [0.08, 0.92]]
    )  # fmt: skip
    truth = np.array([0, 0, 1, 1, 0, 1, 1, 1])
    # ONE threshold for 0.8 accuracy: 0.94 keeps five answers, four right (one wrong "normal" among them)
    assert choose_threshold(probs, truth, 0.8)["threshold"] == pytest.approx(0.94)
    # per label: "normal" needs 0.97 (two right of two); "pneumonia" is right everywhere above the floor
    assert class_thresholds(probs, truth, 0.8, floor=0.94) == pytest.approx([0.97, 0.94])
    # a label nothing above the floor names keeps the floor; a label that never reaches the target gets 1.0
    assert class_thresholds(probs, truth, 0.8, floor=0.98) == pytest.approx([0.98, 0.98])
    assert class_thresholds(probs[2:4], truth[2:4], 0.5, floor=0.5)[0] == 1.0


def test_the_review_fit_gives_each_label_its_own_threshold_above_the_pooled_one():
    # Clean validation: "normal" answers 0.99 right, 0.95 wrong; "pneumonia" answers 0.9 and 0.8 right.
    clean = np.array([[0.99, 0.01], [0.95, 0.05], [0.1, 0.9], [0.2, 0.8]])
    truth = np.array([0, 1, 1, 1])
    review = fit_review(clean, truth, {}, 0.75, ["normal", "pneumonia"])
    # pooled, one threshold (0.8) keeps 3 of 4 right; "normal" alone would be 1 of 2, so it needs 0.99
    assert review["threshold"] == pytest.approx(0.8)
    assert review["class_thresholds"] == {"normal": pytest.approx(0.99), "pneumonia": pytest.approx(0.8)}
    # the figures are what the per-label thresholds keep: the wrong "normal" goes to review
    assert (review["kept"], review["accuracy_above"]) == (3, 1.0)
    with pytest.raises(ValueError, match="labels"):
        fit_review(clean, truth, {}, 0.75, ["normal"])
