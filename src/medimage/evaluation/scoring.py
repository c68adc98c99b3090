"""Scoring labeled images with a classifier: the one path the trainer, the gate, ``evaluate`` and the shift
report share, so each judges a model from the stored file bytes exactly as serving does."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

import numpy as np

from medimage.core.metrics import evaluate
from medimage.core.selective import sampled_curve, select


class Prediction(Protocol):
    probabilities: dict[str, float]


class Classifier(Protocol):
    """What scoring needs of a model (`medimage.inference.model.TFLiteClassifier` has it)."""

    labels: list[str]

    def predict_bytes(self, data: bytes) -> Prediction: ...


def probabilities(classifier: Classifier, contents: Iterable[bytes], workers: int = 1) -> np.ndarray:
    """n x classes probabilities, one row per image's bytes, in the classifier's label order."""
    labels = list(classifier.labels)

    def row(data: bytes) -> list[float]:
        return [classifier.predict_bytes(data).probabilities[label] for label in labels]

    if workers > 1:
        with ThreadPoolExecutor(workers) as pool:
            rows = list(pool.map(row, contents))
    else:
        rows = [row(data) for data in contents]
    return np.array(rows, dtype=np.float64).reshape(len(rows), len(labels))


def score(
    classifier: Classifier,
    contents: Iterable[bytes],
    truth: Sequence[int],
    workers: int = 1,
    threshold: float | None = None,
) -> dict[str, Any]:
    """One split of ``evaluation.json`` (`medimage.core.metrics.evaluate`) for these images; with a review
    ``threshold``, plus ``selective``: the coverage and accuracy of the predictions it keeps."""
    return metrics_of(probabilities(classifier, contents, workers), truth, classifier.labels, threshold)


def metrics_of(
    probs: np.ndarray, truth: Sequence[int], labels: list[str], threshold: float | None = None
) -> dict[str, Any]:
    """`score` for probabilities already computed. ``selective`` also holds a sampled coverage-accuracy
    curve (``curve``), so a plot or a later threshold choice needs no second pass over the images."""
    metrics = evaluate(list(truth), probs, labels)
    if threshold is not None:
        y = np.asarray(truth)
        metrics["selective"] = {**select(probs, y, threshold).to_dict(), "curve": sampled_curve(probs, y)}
    return metrics
