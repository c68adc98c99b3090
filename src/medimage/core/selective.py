"""Selective prediction: keep the predictions the model is sure of, route the rest to a clinician.

A prediction is kept (labelled automatically) when its confidence, the top-1 probability, is at least
the threshold ``t``; coverage is the share kept and selective accuracy the accuracy on them. The
threshold is chosen on the validation split for a stated target accuracy and then applied unchanged to
every later image. A threshold may also be one per predicted class (`class_thresholds`): the target then
holds for each label the model gives, not only on average over them. Pure numpy, no TensorFlow.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

# One confidence every answer must reach, or one per predicted class (in the model's label order).
Threshold = float | Sequence[float]


@dataclass(frozen=True)
class Selection:
    """What a threshold keeps of one labelled set."""

    threshold: float | list[float]
    coverage: float  # share of the images kept
    accuracy_above: float | None  # accuracy on the kept images; None when none is kept
    kept: int
    n: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check(probabilities: np.ndarray, y_true: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    probs = np.asarray(probabilities, dtype=np.float64)
    truth = np.asarray(y_true)
    if probs.ndim != 2 or len(probs) != len(truth):
        raise ValueError(
            f"expected n x classes probabilities and n labels, got {probs.shape} and {truth.shape}"
        )
    if len(probs) == 0:
        raise ValueError("no predictions to select from")
    confidence = probs.max(axis=1)
    # A withheld row (all zeros, `withhold`) is never kept and never counted right.
    return confidence, (probs.argmax(axis=1) == truth) & (confidence > 0)


def withhold(probabilities: np.ndarray, withheld: np.ndarray) -> np.ndarray:
    """The probabilities with the rows of ``withheld`` (a boolean mask) set to zero: images that go to review
    whatever their confidence (too far from the training images), so no threshold keeps them and they
    still count in the coverage."""
    probs = np.array(probabilities, dtype=np.float64)
    probs[np.asarray(withheld, dtype=bool)] = 0.0
    return probs


def per_class(threshold: Threshold, n_classes: int) -> np.ndarray:
    """The threshold as one confidence per predicted class."""
    values = np.asarray(threshold, dtype=np.float64)
    if values.ndim == 0:
        return np.full(n_classes, float(values))
    if values.shape != (n_classes,):
        raise ValueError(f"expected one threshold or {n_classes} (one per class), got {values.shape[0]}")
    return values


def select(probabilities: np.ndarray, y_true: np.ndarray, threshold: Threshold) -> Selection:
    """Coverage and accuracy of the predictions whose confidence is >= ``threshold`` (one figure, or the
    threshold of the class each prediction names)."""
    confidence, correct = _check(probabilities, y_true)
    needed = per_class(threshold, np.shape(probabilities)[1])
    kept = confidence >= needed[np.asarray(probabilities).argmax(axis=1)]
    n_kept = int(kept.sum())
    return Selection(
        threshold=float(threshold) if np.ndim(threshold) == 0 else [float(t) for t in needed],
        coverage=round(n_kept / len(confidence), 6),
        accuracy_above=round(float(correct[kept].mean()), 6) if n_kept else None,
        kept=n_kept,
        n=len(confidence),
    )


def curve(probabilities: np.ndarray, y_true: np.ndarray) -> list[Selection]:
    """The coverage-accuracy curve: one point per distinct confidence, most confident first.

    Predictions with the same confidence are kept or referred together (a threshold cannot split a
    tie), so each point's threshold is a confidence that occurs."""
    confidence, correct = _check(probabilities, y_true)
    order = np.argsort(-confidence, kind="stable")
    sorted_conf, sorted_correct = confidence[order], correct[order]
    cum_correct = np.cumsum(sorted_correct)
    # the last index of each run of equal confidences
    ends = np.flatnonzero(np.append(sorted_conf[1:] != sorted_conf[:-1], True))
    n = len(confidence)
    return [
        Selection(
            threshold=float(sorted_conf[end]),  # exact, so it keeps its own image
            coverage=round((end + 1) / n, 6),
            accuracy_above=round(float(cum_correct[end] / (end + 1)), 6),
            kept=int(end + 1),
            n=n,
        )
        for end in ends
    ]


def sampled_curve(probabilities: np.ndarray, y_true: np.ndarray, points: int = 25) -> list[dict[str, Any]]:
    """At most ``points`` points of `curve`, evenly spread along it and always ending at full coverage:
    small enough to keep in ``evaluation.json`` and plot from there."""
    full = curve(probabilities, y_true)
    if len(full) > points:
        picks = np.unique(np.linspace(0, len(full) - 1, points).round().astype(int))
        full = [full[i] for i in picks]
    return [
        {"threshold": p.threshold, "coverage": p.coverage, "accuracy_above": p.accuracy_above} for p in full
    ]


def choose_threshold(
    probabilities: np.ndarray, y_true: np.ndarray, target_accuracy: float, min_kept: int = 1
) -> dict[str, Any]:
    """The lowest threshold whose kept predictions reach ``target_accuracy`` (the most coverage at that
    accuracy), keeping at least ``min_kept`` images.

    Returns ``model.json``'s ``review`` fields for this set: ``threshold``, ``target_accuracy``,
    ``coverage``, ``accuracy_above``, ``kept``, ``n`` and ``reached``. When no threshold reaches the
    target, the threshold is 1.0 (only certain predictions kept, nearly all referred) and ``reached``
    is False, so a model that cannot meet the target never labels silently."""
    if not 0.0 < target_accuracy <= 1.0:
        raise ValueError(f"target accuracy must be in (0, 1], got {target_accuracy}")
    points = [
        point
        for point in curve(probabilities, y_true)
        if point.kept >= min_kept and point.threshold > 0 and (point.accuracy_above or 0.0) >= target_accuracy
    ]
    if points:
        best = min(points, key=lambda point: point.threshold)
        reached = True
    else:
        best = select(probabilities, y_true, 1.0)
        reached = False
    return {
        "threshold": best.threshold,
        "target_accuracy": target_accuracy,
        "coverage": best.coverage,
        "accuracy_above": best.accuracy_above,
        "kept": best.kept,
        "n": best.n,
        "reached": reached,
    }


def class_thresholds(
    probabilities: np.ndarray, y_true: np.ndarray, target_accuracy: float, floor: float
) -> list[float]:
    """One threshold per predicted class: the lowest, never below ``floor``, at which the predictions that
    name that class and are kept reach ``target_accuracy``; 1.0 for a class that never does, ``floor``
    for a class nothing above the floor names (nothing to judge it by).

    Why: a single threshold meets the target on average, and one class's confident mistakes (healthy
    lungs called pneumonia, or pneumonia called normal) can hide behind another class's sure answers.
    The floor keeps each class at least as strict as the single threshold: a class without mistakes on
    validation is no reason to trust it more on another site's images."""
    confidence, _ = _check(probabilities, y_true)
    predicted = np.asarray(probabilities).argmax(axis=1)
    thresholds = []
    for label in range(np.shape(probabilities)[1]):
        rows = (predicted == label) & (confidence >= floor) & (confidence > 0)
        if not rows.any():
            thresholds.append(float(floor))
            continue
        points = curve(np.asarray(probabilities)[rows], np.asarray(y_true)[rows])
        reaching = [p.threshold for p in points if (p.accuracy_above or 0.0) >= target_accuracy]
        if not reaching:
            thresholds.append(1.0)
        elif min(reaching) == points[-1].threshold:  # all of them: the floor keeps the same images
            thresholds.append(float(floor))
        else:
            thresholds.append(min(reaching))
    return thresholds


def fit_review(
    clean: np.ndarray,
    y_true: np.ndarray,
    shifted: dict[str, np.ndarray],
    target_accuracy: float,
    labels: Sequence[str],
) -> dict[str, Any]:
    """``model.json``'s ``review``: the threshold `choose_threshold` picks on the validation images clean
    and under every acquisition shift, pooled, so that the target holds on images that look like another
    site's and not only on the training site's (a threshold fitted on clean validation alone keeps the
    over-confident answers a shift brings), and above it ``class_thresholds`` (by label), so that it holds
    for each label given. ``coverage``/``accuracy_above``/``kept``/``n`` are what the class thresholds
    keep of the clean validation images; ``pooled`` the same for everything they were fitted on,
    ``shifted_mean_coverage``/``shifted_mean_accuracy_above`` the means over the shifts."""
    y = np.asarray(y_true)
    if len(labels) != np.shape(clean)[1]:
        raise ValueError(f"{len(labels)} labels for {np.shape(clean)[1]} classes")
    pooled_probs = np.concatenate([clean, *shifted.values()])
    pooled_truth = np.concatenate([y] * (1 + len(shifted)))
    fitted = choose_threshold(pooled_probs, pooled_truth, target_accuracy)
    by_class = class_thresholds(pooled_probs, pooled_truth, target_accuracy, fitted["threshold"])
    pooled = select(pooled_probs, pooled_truth, by_class)
    on_clean = select(clean, y, by_class)
    under_shift = [select(probs, y, by_class) for probs in shifted.values()]
    above = [s.accuracy_above for s in under_shift if s.accuracy_above is not None]
    return {
        "threshold": fitted["threshold"],
        "class_thresholds": dict(zip(labels, by_class, strict=True)),
        "target_accuracy": target_accuracy,
        "reached": fitted["reached"],
        "coverage": on_clean.coverage,
        "accuracy_above": on_clean.accuracy_above,
        "kept": on_clean.kept,
        "n": on_clean.n,
        "fitted_on": f"validation, clean and under {len(shifted)} acquisition shifts, pooled",
        "pooled": {k: getattr(pooled, k) for k in ("coverage", "accuracy_above", "kept", "n")},
        "shifted_mean_coverage": round(float(np.mean([s.coverage for s in under_shift])), 6)
        if under_shift
        else None,
        "shifted_mean_accuracy_above": round(float(np.mean(above)), 6) if above else None,
    }
