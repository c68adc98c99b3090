"""Scoring labeled images with a classifier: the one path the trainer, the gate, ``evaluate`` and the shift
report share, so each judges a model from the stored file bytes exactly as serving does."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from medimage.core.metrics import evaluate
from medimage.core.novelty import FOREIGN_IMAGE, OUTSIDE_TRAINING_DISTRIBUTION
from medimage.core.selective import Threshold, sampled_curve, select, withhold

OUTSIDE_REASONS = (FOREIGN_IMAGE, OUTSIDE_TRAINING_DISTRIBUTION)


class Prediction(Protocol):
    probabilities: dict[str, float]


class Classifier(Protocol):
    """What scoring needs of a model (`medimage.inference.model.TFLiteClassifier` has it)."""

    labels: list[str]

    def predict_bytes(self, data: bytes) -> Prediction: ...


@dataclass(frozen=True)
class Scored:
    """What serving answered for each image: probabilities (n x C), the novelty score (NaN where the model
    has none), and the review reason (None where it labeled the image)."""

    probabilities: np.ndarray
    novelty: np.ndarray
    reasons: list[str | None]

    @property
    def outside(self) -> np.ndarray:
        """Images routed to review as too far from the training images, whatever their confidence."""
        return np.array([reason in OUTSIDE_REASONS for reason in self.reasons], dtype=bool)


def scored(classifier: Classifier, contents: Iterable[bytes], workers: int = 1) -> Scored:
    """Each image's bytes through ``predict_bytes``, in the classifier's label order."""
    labels = list(classifier.labels)

    def row(data: bytes) -> tuple[list[float], float, str | None]:
        prediction = classifier.predict_bytes(data)
        novelty = getattr(prediction, "novelty", None)
        return (
            [prediction.probabilities[label] for label in labels],
            float("nan") if novelty is None else float(novelty),
            getattr(prediction, "review_reason", None),
        )

    if workers > 1:
        with ThreadPoolExecutor(workers) as pool:
            rows = list(pool.map(row, contents))
    else:
        rows = [row(data) for data in contents]
    probs = np.array([r[0] for r in rows], dtype=np.float64).reshape(len(rows), len(labels))
    return Scored(probs, np.array([r[1] for r in rows], dtype=np.float64), [r[2] for r in rows])


def probabilities(classifier: Classifier, contents: Iterable[bytes], workers: int = 1) -> np.ndarray:
    """n x classes probabilities, one row per image's bytes, in the classifier's label order."""
    return scored(classifier, contents, workers).probabilities


def score(
    classifier: Classifier,
    contents: Iterable[bytes],
    truth: Sequence[int],
    workers: int = 1,
    threshold: Threshold | None = None,
    per_image: bool = False,
) -> dict[str, Any]:
    """One split of ``evaluation.json`` (`medimage.core.metrics.evaluate`) for these images; with a review
    ``threshold``, plus ``selective``: the coverage and accuracy of the predictions serving labels (above
    the threshold and not too far from the training images). ``per_image`` adds ``truth`` and
    ``predicted`` (class indices in the images' order), so the gate can pair two models image by image."""
    result = scored(classifier, contents, workers)
    metrics = metrics_of(result.probabilities, truth, classifier.labels, threshold, result.outside)
    if per_image:
        metrics["truth"] = [int(t) for t in truth]
        metrics["predicted"] = result.probabilities.argmax(axis=1).tolist()
    return metrics


def metrics_of(
    probs: np.ndarray,
    truth: Sequence[int],
    labels: list[str],
    threshold: Threshold | None = None,
    outside: np.ndarray | None = None,
) -> dict[str, Any]:
    """`score` for probabilities already computed; ``outside`` marks the images routed to review whatever
    their confidence. ``selective`` also holds a sampled coverage-accuracy curve (``curve``), so a plot or a
    later threshold choice needs no second pass over the images."""
    metrics = evaluate(list(truth), probs, labels)
    if threshold is not None:
        y = np.asarray(truth)
        kept = probs if outside is None else withhold(probs, outside)
        metrics["selective"] = {**select(kept, y, threshold).to_dict(), "curve": sampled_curve(kept, y)}
        if outside is not None:
            metrics["selective"]["outside_training_distribution"] = round(float(np.mean(outside)), 6)
    return metrics
