"""Selective prediction: keep the predictions the model is sure of, route the rest to a clinician.

A prediction is kept (labelled automatically) when its confidence, the top-1 probability, is at least
the threshold ``t``; coverage is the share kept and selective accuracy the accuracy on them. The
threshold is chosen on the validation split for a stated target accuracy and then applied unchanged to
every later image. Pure numpy, no TensorFlow.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Selection:
    """What a threshold keeps of one labelled set."""

    threshold: float
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


def select(probabilities: np.ndarray, y_true: np.ndarray, threshold: float) -> Selection:
    """Coverage and accuracy of the predictions whose confidence is >= ``threshold``."""
    confidence, correct = _check(probabilities, y_true)
    kept = confidence >= threshold
    n_kept = int(kept.sum())
    return Selection(
        threshold=float(threshold),
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


def fit_review(
    clean: np.ndarray, y_true: np.ndarray, shifted: dict[str, np.ndarray], target_accuracy: float
) -> dict[str, Any]:
    """``model.json``'s ``review``: the threshold `choose_threshold` picks on the validation images clean
    and under every acquisition shift, pooled, so that the target holds on images that look like another
    site's and not only on the training site's (a threshold fitted on clean validation alone keeps the
    over-confident answers a shift brings). ``coverage``/``accuracy_above``/``kept``/``n`` are what it
    keeps of the clean validation images; ``pooled`` the same for everything it was fitted on,
    ``shifted_mean_coverage``/``shifted_mean_accuracy_above`` the means over the shifts."""
    y = np.asarray(y_true)
    pooled_probs = np.concatenate([clean, *shifted.values()])
    pooled_truth = np.concatenate([y] * (1 + len(shifted)))
    fitted = choose_threshold(pooled_probs, pooled_truth, target_accuracy)
    threshold = fitted["threshold"]
    on_clean = select(clean, y, threshold)
    under_shift = [select(probs, y, threshold) for probs in shifted.values()]
    above = [s.accuracy_above for s in under_shift if s.accuracy_above is not None]
    return {
        "threshold": threshold,
        "target_accuracy": target_accuracy,
        "reached": fitted["reached"],
        "coverage": on_clean.coverage,
        "accuracy_above": on_clean.accuracy_above,
        "kept": on_clean.kept,
        "n": on_clean.n,
        "fitted_on": f"validation, clean and under {len(shifted)} acquisition shifts, pooled",
        "pooled": {k: fitted[k] for k in ("coverage", "accuracy_above", "kept", "n")},
        "shifted_mean_coverage": round(float(np.mean([s.coverage for s in under_shift])), 6)
        if under_shift
        else None,
        "shifted_mean_accuracy_above": round(float(np.mean(above)), 6) if above else None,
    }
