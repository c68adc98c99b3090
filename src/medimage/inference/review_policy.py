"""When a served answer goes to a clinician: the thresholds ``model.json`` ``review`` holds (one, and one per
label), read and checked, and the decision for one answer."""

from __future__ import annotations

from typing import Any

from medimage.core.errors import ModelError
from medimage.core.novelty import FOREIGN_IMAGE, OUTSIDE_TRAINING_DISTRIBUTION

# Why a prediction is routed to a clinician (``Prediction.review_reason``), strongest first: not the kind
# of image the model reads (novelty above ``foreign_threshold``), an image unlike the training images
# (novelty above ``unusual_threshold``, or outside ``model.json`` ``input_profile``), a low confidence.
# The first two outrank a low confidence, since the confidence of such an image means little.
REVIEW_REASONS = (FOREIGN_IMAGE, OUTSIDE_TRAINING_DISTRIBUTION, "low_confidence")


def review_threshold_of(meta: dict[str, Any]) -> float | None:
    """``model.json`` ``review.threshold``, or None for a model trained without a review policy."""
    review = meta.get("review") or {}
    value = review.get("threshold")
    if value is None:
        return None
    threshold = float(value)
    if not 0.0 <= threshold <= 1.0:
        raise ModelError(f"model.json review.threshold {threshold} is not a probability in [0, 1]")
    return threshold


def class_thresholds_of(meta: dict[str, Any], labels: list[str]) -> list[float] | None:
    """``model.json`` ``review.class_thresholds`` in label order (the confidence each predicted label
    needs), or None for a model with one threshold for all."""
    by_label = (meta.get("review") or {}).get("class_thresholds")
    if by_label is None:
        return None
    if not isinstance(by_label, dict) or sorted(by_label) != sorted(labels):
        raise ModelError(f"model.json review.class_thresholds must give one threshold for each of {labels}")
    thresholds = [float(by_label[label]) for label in labels]
    if not all(0.0 <= t <= 1.0 for t in thresholds):
        raise ModelError(f"model.json review.class_thresholds {by_label} are not probabilities in [0, 1]")
    return thresholds


def review_decision(
    confidence: float, threshold: float | None, outside: bool | str | None = False
) -> tuple[bool, str | None]:
    """(needs_review, reason): an image far from the training images (``outside``: True, or the reason the
    novelty policy gave), or a confidence below the threshold, goes to a clinician; no threshold and
    nothing outside, no review."""
    if outside:
        return True, outside if isinstance(outside, str) else OUTSIDE_TRAINING_DISTRIBUTION
    if threshold is not None and confidence < threshold:
        return True, "low_confidence"
    return False, None
