"""The novelty score's rules on plain arrays: the fitted distance, the two thresholds, and how they route."""

from __future__ import annotations

import numpy as np
import pytest

from medimage.core.novelty import (
    FOREIGN_IMAGE,
    NEGATIVE_SCALE,
    OUTSIDE_TRAINING_DISTRIBUTION,
    ClassGaussians,
    NoveltyPolicy,
    fit_class_gaussians,
    fit_negative_direction,
    fit_policy,
    novelty_scores,
)
from medimage.core.selective import choose_threshold, select, withhold


def two_classes(n: int = 400, dims: int = 6, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    scales = np.linspace(0.2, 2.0, dims)  # unequal variances: Mahalanobis is not Euclidean here
    features = rng.normal(0, 1, (n, dims)) * scales + np.where(y[:, None] == 1, 3.0, 0.0)
    return features, y


def test_the_score_is_the_squared_mahalanobis_distance_to_the_nearest_class_over_the_dimensions() -> None:
    features, y = two_classes()
    fitted = fit_class_gaussians(features, y, 2, shrinkage=0.0)
    centred = features - fitted.means[y]
    precision = np.linalg.inv(centred.T @ centred / (len(features) - 2))
    point = features[:5]
    by_hand = np.min(
        [np.einsum("ij,jk,ik->i", point - mean, precision, point - mean) for mean in fitted.means], axis=0
    )
    assert novelty_scores(point, fitted) == pytest.approx(by_hand / features.shape[1], rel=1e-9)
    # a training image scores about 1; a point far along the narrowest direction scores far more
    assert np.median(novelty_scores(features, fitted)) == pytest.approx(1.0, abs=0.25)
    far = fitted.means[0].copy()
    far[0] -= 3.0  # 15 standard deviations along the narrowest feature, away from the other class
    assert novelty_scores(far[None], fitted)[0] > 20


def test_every_class_needs_training_images() -> None:
    features, _ = two_classes()
    with pytest.raises(ValueError, match="every class needs training images"):
        fit_class_gaussians(features, np.zeros(len(features), dtype=int), 2)


def test_the_policy_tells_foreign_from_unusual_and_lets_the_rest_through() -> None:
    policy = NoveltyPolicy(unusual_threshold=2.0, foreign_threshold=10.0)
    assert [policy.reason(s) for s in (1.0, 2.0, 2.5, 10.0, 50.0)] == [
        None,
        None,
        OUTSIDE_TRAINING_DISTRIBUTION,
        OUTSIDE_TRAINING_DISTRIBUTION,
        FOREIGN_IMAGE,
    ]
    assert policy.flagged(np.array([1.0, 3.0, np.nan])).tolist() == [False, True, False]
    assert NoveltyPolicy.from_dict(policy.to_dict()) == policy
    with pytest.raises(ValueError, match="unusual"):
        NoveltyPolicy(unusual_threshold=3.0, foreign_threshold=2.0)
    with pytest.raises(ValueError, match="foreign_threshold"):
        NoveltyPolicy.from_dict({"unusual_threshold": 1.0})


def test_fitted_thresholds_sit_at_the_validation_quantile_and_beyond_every_validation_image() -> None:
    clean = np.linspace(0.5, 1.5, 101)
    shifted = {"gamma": np.linspace(0.5, 2.5, 101), "blur": np.array([0.7, np.nan])}
    policy = fit_policy(clean, shifted, quantile=0.99)
    pooled = np.concatenate([clean, shifted["gamma"], [0.7]])
    assert policy.unusual_threshold == pytest.approx(np.quantile(pooled, 0.99), rel=1e-6)
    assert policy.foreign_threshold == 2.5  # the highest validation score, shifted or not
    assert policy.reason(1.0) is None
    assert policy.reason(2.48) == OUTSIDE_TRAINING_DISTRIBUTION
    assert policy.reason(2.6) == FOREIGN_IMAGE
    with pytest.raises(ValueError, match="no validation scores"):
        fit_policy(np.array([np.nan]), {})


def test_withheld_images_are_never_kept_and_still_count_in_the_coverage() -> None:
    probs = np.array([[0.99, 0.01], [0.98, 0.02], [0.6, 0.4], [0.97, 0.03]])
    truth = np.array([0, 1, 0, 0])
    # the confident wrong answer (row 1) is far from the training images: withheld
    kept = withhold(probs, np.array([False, True, False, False]))
    selection = select(kept, truth, 0.9)
    assert (selection.kept, selection.n, selection.accuracy_above) == (2, 4, 1.0)
    fitted = choose_threshold(kept, truth, 1.0)
    assert fitted["threshold"] > 0 and fitted["reached"] and fitted["coverage"] == 0.75


def many_features(n: int = 2000, dims: int = 200, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Training-like features (many dimensions, as pooled activations are) and known wrong inputs made
    of them: apart along one direction only, by 6 of its standard deviations, which a distance averaged
    over every dimension hardly notices."""
    rng = np.random.default_rng(seed)
    scales = np.linspace(0.5, 2.0, dims)
    features = rng.normal(0, 1, (n, dims)) * scales
    negatives = rng.normal(0, 1, (n, dims)) * scales
    negatives[:, 3] += 6.0 * scales[3]
    return features, negatives


def test_the_inverted_direction_raises_inputs_like_the_negatives_and_leaves_training_images_alone() -> None:
    features, negatives = many_features()
    base = fit_class_gaussians(features, np.zeros(len(features), dtype=int), 1)
    direction = fit_negative_direction(features, negatives, base)
    assert direction is not None
    with_negative = ClassGaussians(base.means, base.precision_cholesky, direction)
    # training images keep their distance (the direction starts beyond 99.9 % of them)
    plain, scored = novelty_scores(features, base), novelty_scores(features, with_negative)
    assert np.mean(scored == plain) >= 0.99
    # unseen images: a threshold at the 99th percentile of clean ones lets most negatives through on the
    # plain distance; with the direction nearly all of them score above it, and clean ones stay below
    unseen_features, unseen = many_features(seed=5)
    threshold = float(np.quantile(novelty_scores(unseen_features, base), 0.99))
    assert np.mean(novelty_scores(unseen, base) > threshold) < 0.3
    assert np.mean(novelty_scores(unseen, with_negative) > threshold) > 0.85
    assert np.mean(novelty_scores(unseen_features, with_negative) > threshold) <= 0.02
    # the median negative scores NEGATIVE_SCALE times the training images' 99th percentile
    target = NEGATIVE_SCALE * float(np.quantile(plain, 0.99))
    assert np.median(direction.scores(negatives)) == pytest.approx(target, rel=1e-6)


def test_no_direction_when_the_features_cannot_tell_the_negatives_apart() -> None:
    features, _ = many_features()
    same_kind, _ = many_features(seed=9)
    base = fit_class_gaussians(features, np.zeros(len(features), dtype=int), 1)
    assert fit_negative_direction(features, same_kind, base) is None
