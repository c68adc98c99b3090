"""medimage.core.metrics against values worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from medimage.core.metrics import binary_auc, confusion_matrix, evaluate, macro_auc


def test_binary_example_matches_hand_computed_values() -> None:
    # GIVEN 6 images, classes (a, b); predictions: a a b | b b a  for truths a a a | b b b
    truth = [0, 0, 0, 1, 1, 1]
    p_b = np.array([0.1, 0.3, 0.6, 0.8, 0.7, 0.4])
    probs = np.stack([1 - p_b, p_b], axis=1)
    # WHEN
    m = evaluate(truth, probs, ["a", "b"])
    # THEN accuracy 4/6; a: tp 2, fp 1, fn 1 -> P = R = F1 = 2/3; same for b
    assert m["n"] == 6
    assert m["accuracy"] == pytest.approx(0.666667)
    assert m["confusion_matrix"] == [[2, 1], [1, 2]]
    for label in ("a", "b"):
        expected = {"precision": 0.666667, "recall": 0.666667, "f1": 0.666667, "support": 3}
        assert m["per_class"][label] == expected
    # AUC: of the 9 (positive b, negative a) pairs, 8 are ordered right (0.6 > 0.4 is the only miss)
    assert m["macro_auc"] == pytest.approx(8 / 9, abs=1e-6)
    assert m["labels"] == ["a", "b"]


def test_three_classes_precision_recall_differ() -> None:
    # truths   0 0 1 1 2 2 ; predicted 0 1 1 1 2 0
    truth = np.array([0, 0, 1, 1, 2, 2])
    predicted = np.array([0, 1, 1, 1, 2, 0])
    probs = np.full((6, 3), 0.1)
    probs[np.arange(6), predicted] = 0.8
    m = evaluate(truth, probs, ["x", "y", "z"])
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    # x: tp1 fp1 fn1 -> 0.5/0.5/0.5; y: tp2 fp1 fn0 -> P 2/3, R 1, F1 0.8; z: tp1 fp0 fn1 -> P 1, R .5, F1 2/3
    assert m["per_class"]["x"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    assert m["per_class"]["y"] == {"precision": 0.666667, "recall": 1.0, "f1": 0.8, "support": 2}
    assert m["per_class"]["z"] == {"precision": 1.0, "recall": 0.5, "f1": 0.666667, "support": 2}
    assert m["accuracy"] == pytest.approx(4 / 6, abs=1e-6)


def test_class_without_support_has_undefined_recall_and_no_crash() -> None:
    # GIVEN no true 'c' at all, and 'c' predicted once (a false positive)
    truth = [0, 1, 1]
    probs = np.array([[0.9, 0.05, 0.05], [0.1, 0.8, 0.1], [0.1, 0.2, 0.7]])
    m = evaluate(truth, probs, ["a", "b", "c"])
    assert m["per_class"]["c"] == {"precision": 0.0, "recall": None, "f1": None, "support": 0}
    # b is never wrongly predicted but missed once: P 1, R 0.5
    assert m["per_class"]["b"]["recall"] == 0.5
    # AUC is averaged over a and b only (c has no positives): both rank perfectly
    assert m["macro_auc"] == 1.0


def test_class_never_predicted_and_never_true_has_no_precision() -> None:
    m = evaluate([0, 1], np.array([[0.9, 0.1, 0.0], [0.2, 0.8, 0.0]]), ["a", "b", "c"])
    assert m["per_class"]["c"] == {"precision": None, "recall": None, "f1": None, "support": 0}


def test_missed_class_has_zero_precision_recall_f1() -> None:
    m = evaluate([0, 1], np.array([[0.9, 0.1], [0.9, 0.1]]), ["a", "b"])
    assert m["per_class"]["b"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}


def test_auc_counts_ties_as_half() -> None:
    # one positive and one negative with the same score: AUC 0.5
    assert binary_auc(np.array([True, False]), np.array([0.5, 0.5])) == 0.5
    # positives 0.9, 0.5; negatives 0.5, 0.1: pairs (0.9>0.5)(0.9>0.1)(0.5=0.5 -> 1/2)(0.5>0.1) = 3.5/4
    auc = binary_auc(np.array([True, True, False, False]), np.array([0.9, 0.5, 0.5, 0.1]))
    assert auc == pytest.approx(3.5 / 4)


def test_auc_undefined_without_both_classes() -> None:
    assert binary_auc(np.array([True, True]), np.array([0.2, 0.3])) is None
    assert macro_auc(np.array([0, 0]), np.array([[0.6, 0.4], [0.7, 0.3]])) is None
    m = evaluate([0, 0], np.array([[0.6, 0.4], [0.7, 0.3]]), ["a", "b"])
    assert m["macro_auc"] is None


def test_confusion_matrix_rows_are_truth() -> None:
    assert confusion_matrix(np.array([0, 1, 1]), np.array([1, 1, 0]), 2).tolist() == [[0, 1], [1, 1]]


@pytest.mark.parametrize(
    ("truth", "probs"),
    [([], np.zeros((0, 2))), ([0, 1], np.zeros((2, 3))), ([0, 2], np.zeros((2, 2)))],
)
def test_bad_shapes_and_empty_input_raise_value_error(truth: list[int], probs: np.ndarray) -> None:
    with pytest.raises(ValueError):
        evaluate(truth, probs, ["a", "b"])


def test_calibration_error_and_log_loss_match_hand_computed_values() -> None:
    # GIVEN two images at confidence 0.9 (one right, one wrong) and two at 0.6 (both right)
    truth = np.array([0, 1, 1, 0])
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.4, 0.6], [0.6, 0.4]])
    m = evaluate(truth, probs, ["a", "b"])
    # THEN each bin is 0.4 away from its accuracy (0.9 vs 0.5, 0.6 vs 1.0), each holding half the images
    assert m["ece"] == pytest.approx(0.4)
    assert m["log_loss"] == pytest.approx(-np.mean(np.log([0.9, 0.1, 0.6, 0.6])), abs=1e-6)


def test_a_perfectly_calibrated_set_has_no_calibration_error() -> None:
    # 80% confident and right 4 times out of 5
    truth = np.array([0, 0, 0, 0, 1])
    probs = np.tile([0.8, 0.2], (5, 1))
    assert evaluate(truth, probs, ["a", "b"])["ece"] == pytest.approx(0.0)
