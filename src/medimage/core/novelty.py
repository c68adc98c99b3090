"""Knowing when an image is beyond the model: how far its features lie from the training images.

The score is the squared Mahalanobis distance (Lee et al., 2018) of the pooled activations of one of the
network's layers to those of the training images (their mean and shrunk covariance; the fitting code
also takes one Gaussian per class with a shared covariance), divided by the number of activations. The
trained network computes it in its own graph (the ``novelty`` output); ``model.json`` ``novelty`` holds
the two thresholds the trainer fitted:

- above ``unusual_threshold`` the image is the right kind but unlike the training images (another
  machine, another population, a bad exposure): review, reason ``outside_training_distribution``;
- above ``foreign_threshold`` it is not the kind of image the model reads at all (a photograph, a scan of
  another modality, a document): review, reason ``foreign_image``.

Either way the image is never labeled automatically, whatever its softmax says: a softmax is confident
about anything, including a cat.

A distance to the training images alone misses the inverted X-ray (a negative, or a wrong photometric
interpretation): its features keep the anatomy and stay near the training images on most axes. The trainer
therefore also fits the direction (linear discriminant, on the same features) that tells the training images
from themselves inverted, and the score is at least that discriminant, scaled so that an inverted training
X-ray scores twice the training images' 99th percentile and no training image is raised
(`NegativeDirection`). Measured on the chest model: it moves every inverted validation X-ray to the side of
the inverted ones, and 0-2.6 % of clean or shifted ones (docs/experiments.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

NOVELTY_OUTPUT = "novelty"
FOREIGN_IMAGE = "foreign_image"
OUTSIDE_TRAINING_DISTRIBUTION = "outside_training_distribution"
# Ledoit-Wolf style shrinkage of the shared covariance toward its mean variance: pooled features have
# dead and collinear channels, so the plain covariance is singular.
DEFAULT_SHRINKAGE = 0.1


# Where the inverted-image score starts: the share of training images it leaves alone.
NEGATIVE_START_QUANTILE = 0.999
# What the median inverted training X-ray scores: this many times the training images' 99th percentile.
NEGATIVE_SCALE = 2.0


@dataclass(frozen=True)
class NegativeDirection:
    """A linear score of the pooled features, ``f . weights + bias``, that rises as an image looks like a
    known kind of wrong input (the training images inverted) rather than a training image."""

    weights: np.ndarray  # D
    bias: float

    def scores(self, features: np.ndarray) -> np.ndarray:
        return np.asarray(features, dtype=np.float64) @ self.weights + self.bias


@dataclass(frozen=True)
class ClassGaussians:
    """Class means and the Cholesky factor ``L`` of the shared precision (``P = L L^T``), and the
    direction toward known wrong inputs, where one was fitted (the score is at least it)."""

    means: np.ndarray  # K x D
    precision_cholesky: np.ndarray  # D x D, lower triangular
    negative: NegativeDirection | None = None

    @property
    def dimensions(self) -> int:
        return int(self.means.shape[1])

    @property
    def whitened_means(self) -> np.ndarray:
        """``mu_k L``: in whitened space the distance is the plain Euclidean one."""
        return self.means @ self.precision_cholesky


def fit_class_gaussians(
    features: np.ndarray, y: np.ndarray, n_classes: int, shrinkage: float = DEFAULT_SHRINKAGE
) -> ClassGaussians:
    """Means per class and the shrunk shared covariance of ``features`` (n x D) with labels ``y``."""
    features = np.asarray(features, dtype=np.float64)
    y = np.asarray(y)
    present = [k for k in range(n_classes) if np.any(y == k)]
    if len(present) != n_classes:
        raise ValueError(f"every class needs training images to fit the novelty score; got {present}")
    means = np.stack([features[y == k].mean(axis=0) for k in range(n_classes)])
    centred = features - means[y]
    covariance = centred.T @ centred / max(1, len(features) - n_classes)
    # A floor on the mean variance: an untrained or tiny network can give features that never vary.
    target = max(float(np.trace(covariance)) / covariance.shape[0], 1e-6)
    shrunk = (1.0 - shrinkage) * covariance + shrinkage * target * np.eye(covariance.shape[0])
    precision = np.linalg.inv(shrunk)
    precision = (precision + precision.T) / 2.0
    return ClassGaussians(means=means, precision_cholesky=np.linalg.cholesky(precision))


def novelty_scores(features: np.ndarray, gaussians: ClassGaussians) -> np.ndarray:
    """The score of each row of ``features``: the squared Mahalanobis distance to the nearest class mean,
    divided by the number of features (what the served graph computes, in float64)."""
    whitened = np.asarray(features, dtype=np.float64) @ gaussians.precision_cholesky
    centres = gaussians.whitened_means
    squared = ((whitened[:, None, :] - centres[None, :, :]) ** 2).sum(axis=2)
    distance = squared.min(axis=1) / gaussians.dimensions
    if gaussians.negative is None:
        return distance
    return np.maximum(distance, gaussians.negative.scores(features))


def fit_negative_direction(
    features: np.ndarray,
    negatives: np.ndarray,
    base: ClassGaussians,
    shrinkage: float = DEFAULT_SHRINKAGE,
) -> NegativeDirection | None:
    """The scaled linear discriminant between the training images' ``features`` and the ``negatives``'
    (the same images made wrong), or None where the features do not tell them apart.

    With a shared covariance, ``(d_train - d_negative) / D`` is linear in the features: ``t = f . w + b``.
    It starts at ``NEGATIVE_START_QUANTILE`` of the training images' ``t`` and is scaled so that the median
    negative scores ``NEGATIVE_SCALE`` times the 99th percentile of ``base``'s training scores."""
    features = np.asarray(features, dtype=np.float64)
    negatives = np.asarray(negatives, dtype=np.float64)
    groups = np.concatenate([np.zeros(len(features), dtype=int), np.ones(len(negatives), dtype=int)])
    pair = fit_class_gaussians(np.concatenate([features, negatives]), groups, 2, shrinkage)
    centres = pair.whitened_means
    weights = 2.0 * pair.precision_cholesky @ (centres[1] - centres[0]) / pair.dimensions
    bias = float(centres[0] @ centres[0] - centres[1] @ centres[1]) / pair.dimensions
    start = float(np.quantile(features @ weights + bias, NEGATIVE_START_QUANTILE))
    spread = float(np.median(negatives @ weights + bias)) - start
    if not spread > 0:
        return None
    target = NEGATIVE_SCALE * float(np.quantile(novelty_scores(features, base), 0.99))
    scale = target / spread
    return NegativeDirection(weights=weights * scale, bias=(bias - start) * scale)


@dataclass(frozen=True)
class NoveltyPolicy:
    """``model.json`` ``novelty``: the graph output to read and the two thresholds on it."""

    unusual_threshold: float
    foreign_threshold: float
    output: str = NOVELTY_OUTPUT

    def __post_init__(self) -> None:
        if not 0 <= self.unusual_threshold <= self.foreign_threshold:
            raise ValueError(
                f"novelty thresholds must satisfy 0 <= unusual ({self.unusual_threshold}) "
                f"<= foreign ({self.foreign_threshold})"
            )

    def flagged(self, scores: np.ndarray) -> np.ndarray:
        """Which of these scores send their image to review (NaN, a model without the score: none)."""
        scores = np.asarray(scores, dtype=np.float64)
        return np.nan_to_num(scores, nan=0.0) > self.unusual_threshold

    def to_dict(self) -> dict[str, Any]:
        return {
            "output": self.output,
            "unusual_threshold": self.unusual_threshold,
            "foreign_threshold": self.foreign_threshold,
        }

    def reason(self, score: float) -> str | None:
        """Why an image with this score goes to review, or None when it is like the training images."""
        if score > self.foreign_threshold:
            return FOREIGN_IMAGE
        if score > self.unusual_threshold:
            return OUTSIDE_TRAINING_DISTRIBUTION
        return None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NoveltyPolicy:
        try:
            return cls(
                unusual_threshold=float(data["unusual_threshold"]),
                foreign_threshold=float(data["foreign_threshold"]),
                output=str(data.get("output", NOVELTY_OUTPUT)),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"novelty needs unusual_threshold and foreign_threshold: {exc}") from None


# The unusual threshold: the score this share of the validation images, clean and under the acquisition
# shifts pooled, stay below; the rest of them go to review as unlike the training images.
UNUSUAL_QUANTILE = 0.99


def fit_policy(
    clean: np.ndarray, shifted: dict[str, np.ndarray], quantile: float = UNUSUAL_QUANTILE
) -> NoveltyPolicy:
    """Thresholds from the validation images' scores, clean and under each acquisition shift.

    ``unusual`` is the ``quantile`` of those scores pooled; ``foreign`` the highest of them: an image
    beyond every validation X-ray, however it was shifted, is not taken for one (measured on the chest
    model: photographs, OCT scans and documents all lie beyond it; see docs/experiments.md)."""
    pooled = np.concatenate([np.asarray(clean, dtype=np.float64), *map(np.asarray, shifted.values())])
    pooled = pooled[np.isfinite(pooled)]
    if not len(pooled):
        raise ValueError("no validation scores to fit the novelty thresholds on")
    unusual = float(np.quantile(pooled, quantile))
    return NoveltyPolicy(round(unusual, 6), round(max(unusual, float(pooled.max())), 6))


def rate_above(scores: np.ndarray, threshold: float) -> float:
    """The share of scores above ``threshold``."""
    scores = np.asarray(scores, dtype=np.float64)
    return round(float(np.mean(scores > threshold)), 6) if len(scores) else 0.0
