"""Classification metrics in the ``evaluation.json`` per-split format (pure numpy).

The trainer, ``medimage evaluate`` and the gate all read these same numbers, so they are computed in one
place. Conventions for degenerate cases (they occur on small or unbalanced splits and must not crash):

- a class with no support (no true examples): ``recall`` and ``f1`` are ``None`` (undefined, not 0, so
  a recall floor in the gate cannot be passed or failed by a class that was never tested);
- a class never predicted: ``precision`` is 0.0 when it has support, ``None`` when it has none either;
- ``macro_auc`` averages the one-vs-rest AUC over the classes that have both positives and negatives;
  ``None`` when no class has both.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

DECIMALS = 6


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), DECIMALS)


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Rows are the true class, columns the predicted class."""
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(matrix, (y_true, y_pred), 1)
    return matrix


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks with ties given their average rank (as the Mann-Whitney U statistic needs)."""
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    ranks = np.empty(len(values), dtype=np.float64)
    # Boundaries of runs of equal values in the sorted array.
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    ends = np.r_[starts[1:], len(values)]
    for start, end in zip(starts, ends, strict=True):
        ranks[order[start:end]] = (start + end + 1) / 2.0
    return ranks


def binary_auc(is_positive: np.ndarray, scores: np.ndarray) -> float | None:
    """ROC AUC by ranks: P(score of a random positive > score of a random negative), ties count 1/2."""
    positives = int(is_positive.sum())
    negatives = len(is_positive) - positives
    if positives == 0 or negatives == 0:
        return None
    ranks = _average_ranks(scores.astype(np.float64))
    rank_sum = float(ranks[is_positive].sum())
    return (rank_sum - positives * (positives + 1) / 2.0) / (positives * negatives)


def macro_auc(y_true: np.ndarray, probabilities: np.ndarray) -> float | None:
    """Mean one-vs-rest AUC over the classes where it is defined."""
    aucs = [
        auc
        for k in range(probabilities.shape[1])
        if (auc := binary_auc(y_true == k, probabilities[:, k])) is not None
    ]
    return float(np.mean(aucs)) if aucs else None


def expected_calibration_error(y_true: np.ndarray, probabilities: np.ndarray, bins: int = 10) -> float:
    """How far the top-1 confidence is from the accuracy, averaged over equal-width confidence bins.

    0 means "90% sure" is right 90% of the time; a model that says 0.99 and is right 80% of the time
    has an ECE near 0.19. Weighted by the share of images in each bin (Guo et al., 2017).
    """
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == y_true
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    error = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            error += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    return float(error)


def log_loss(y_true: np.ndarray, probabilities: np.ndarray) -> float:
    """Mean negative log probability of the true class (clipped at 1e-7, so one certain miss is finite)."""
    picked = np.clip(probabilities[np.arange(len(y_true)), y_true], 1e-7, 1.0)
    return float(-np.mean(np.log(picked)))


def evaluate(
    y_true: Sequence[int] | np.ndarray, probabilities: np.ndarray, labels: Sequence[str]
) -> dict[str, Any]:
    """One split of ``evaluation.json`` from true class indices and predicted probabilities (n x classes)."""
    labels = list(labels)
    truth = np.asarray(y_true, dtype=np.int64)
    probs = np.asarray(probabilities, dtype=np.float64)
    if probs.ndim != 2 or probs.shape != (len(truth), len(labels)):
        raise ValueError(f"probabilities must be {len(truth)} x {len(labels)}, got shape {probs.shape}")
    if len(truth) == 0:
        raise ValueError("cannot evaluate an empty set of images")
    if truth.min() < 0 or truth.max() >= len(labels):
        raise ValueError(f"true class indices must lie in 0..{len(labels) - 1}")
    predicted = probs.argmax(axis=1)
    matrix = confusion_matrix(truth, predicted, len(labels))
    per_class: dict[str, dict[str, Any]] = {}
    for k, label in enumerate(labels):
        tp = int(matrix[k, k])
        support = int(matrix[k, :].sum())
        predicted_k = int(matrix[:, k].sum())
        recall = tp / support if support else None
        if predicted_k:
            precision: float | None = tp / predicted_k
        else:
            precision = 0.0 if support else None
        if recall is None or precision is None:
            f1 = None
        else:
            f1 = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
        per_class[label] = {
            "precision": _round(precision),
            "recall": _round(recall),
            "f1": _round(f1),
            "support": support,
        }
    return {
        "n": len(truth),
        "accuracy": _round(np.trace(matrix) / len(truth)),
        "per_class": per_class,
        "macro_auc": _round(macro_auc(truth, probs)),
        "log_loss": _round(log_loss(truth, probs)),
        "ece": _round(expected_calibration_error(truth, probs)),
        "confusion_matrix": matrix.tolist(),
        "labels": labels,
    }
