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


@dataclass(frozen=True)
class ClassGaussians:
    """Class means and the Cholesky factor ``L`` of the shared precision (``P = L L^T``)."""

    means: np.ndarray  # K x D
    precision_cholesky: np.ndarray  # D x D, lower triangular

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
    return squared.min(axis=1) / gaussians.dimensions


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
