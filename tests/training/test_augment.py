"""The augmentation pipeline: valid pixel range, reproducible draws, honest mixup targets, and a
per-image standardisation layer that makes exposure changes irrelevant."""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from medimage.training.augment import AugmentConfig, batch_augmenter  # noqa: E402
from medimage.training.model import PerImageStandardization, compact_cnn  # noqa: E402


def _batch(n: int = 8, size: int = 32) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (n, size, size, 1)).astype(np.uint8)
    target = np.eye(2, dtype=np.float32)[np.arange(n) % 2]
    weight = np.where(np.arange(n) % 2 == 0, 0.5, 2.0).astype(np.float32)
    return x, target, weight


def test_augmented_images_stay_in_the_pixel_range_and_change() -> None:
    # GIVEN every augmentation turned on
    x, target, weight = _batch()
    apply = batch_augmenter(7, 1, AugmentConfig(acquisition=True, mixup_alpha=0.4))
    # WHEN a batch goes through it
    out, _, _ = apply(tf.constant(x), tf.constant(target), tf.constant(weight))
    out = out.numpy()
    # THEN the images are still 0..255 images of the same shape, but not the same pixels
    assert out.shape == x.shape and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 255.0
    assert np.abs(out - x).mean() > 1.0


def test_the_same_seed_draws_the_same_augmentation() -> None:
    x, target, weight = _batch()
    runs = [
        batch_augmenter(3, 1, AugmentConfig(acquisition=True, mixup_alpha=0.2))(
            tf.constant(x), tf.constant(target), tf.constant(weight)
        )[0].numpy()
        for _ in range(2)
    ]
    np.testing.assert_array_equal(runs[0], runs[1])


def test_mixup_targets_stay_distributions_led_by_the_first_image() -> None:
    x, target, weight = _batch(n=16)
    apply = batch_augmenter(1, 1, AugmentConfig(geometric=False, acquisition=False, mixup_alpha=0.4))
    mixed_x, mixed_target, mixed_weight = (
        t.numpy() for t in apply(tf.constant(x), tf.constant(target), tf.constant(weight))
    )
    np.testing.assert_allclose(mixed_target.sum(axis=1), 1.0, atol=1e-6)
    # Each example keeps at least half of its own label, and its weight lies between the two it mixed.
    assert np.all((mixed_target * target).sum(axis=1) >= 0.5 - 1e-6)
    assert np.all((mixed_weight >= 0.5 - 1e-6) & (mixed_weight <= 2.0 + 1e-6))
    assert not np.allclose(mixed_x, x)


def test_nothing_turned_on_leaves_the_batch_unchanged() -> None:
    x, target, weight = _batch()
    apply = batch_augmenter(0, 1, AugmentConfig(geometric=False, acquisition=False, mixup_alpha=0.0))
    out, out_target, out_weight = apply(tf.constant(x), tf.constant(target), tf.constant(weight))
    np.testing.assert_array_equal(out.numpy(), x.astype(np.float32))
    np.testing.assert_array_equal(out_target.numpy(), target)
    np.testing.assert_array_equal(out_weight.numpy(), weight)


def test_standardisation_removes_exposure_and_contrast_changes() -> None:
    # GIVEN an image and a brighter, higher-contrast version of it (a linear change of its pixels)
    rng = np.random.default_rng(1)
    image = rng.uniform(20, 120, (1, 16, 16, 1)).astype(np.float32)
    brighter = 1.8 * image + 30.0
    layer = PerImageStandardization()
    # THEN the network sees the same standardised image for both
    np.testing.assert_allclose(layer(image).numpy(), layer(brighter).numpy(), atol=1e-3)
    # AND a model with the layer gives both the same prediction
    model = compact_cnn(16, 1, 2, width=4, standardize=True)
    np.testing.assert_allclose(model(image).numpy(), model(brighter).numpy(), atol=1e-4)


def test_folding_the_temperature_into_the_model_rescales_its_softmax() -> None:
    from medimage.training.calibration import fold_into_model, rescale

    # GIVEN a model and its predictions
    model = compact_cnn(16, 1, 3, width=4)
    x = np.random.default_rng(2).uniform(0, 255, (4, 16, 16, 1)).astype(np.float32)
    before = model(x).numpy().astype(np.float64)
    # WHEN a temperature of 2.5 is folded into its last layer
    fold_into_model(model, 2.5)
    # THEN it predicts exactly what rescaling its old softmax by that temperature gives
    np.testing.assert_allclose(model(x).numpy(), rescale(before, 2.5), atol=1e-5)


def test_acquisition_probability_leaves_some_images_as_acquired() -> None:
    # GIVEN only the acquisition changes, applied to half the images
    x, target, weight = _batch(n=32)
    config = AugmentConfig(geometric=False, acquisition=True, acquisition_probability=0.5, mixup_alpha=0.0)
    out = batch_augmenter(5, 1, config)(tf.constant(x), tf.constant(target), tf.constant(weight))[0].numpy()
    unchanged = [np.array_equal(out[i], x[i].astype(np.float32)) for i in range(len(x))]
    # THEN some images are untouched and the others changed
    assert 4 <= sum(unchanged) <= 28
    never = AugmentConfig(geometric=False, acquisition=True, acquisition_probability=0.0, mixup_alpha=0.0)
    untouched = batch_augmenter(5, 1, never)(tf.constant(x), tf.constant(target), tf.constant(weight))[0]
    np.testing.assert_array_equal(untouched.numpy(), x.astype(np.float32))


def test_batch_norm_statistics_average_over_about_one_epoch() -> None:
    from medimage.training.schedule import batch_norm_momentum

    assert batch_norm_momentum(0.0, 8) == 0.9  # small datasets: statistics settle quickly
    assert batch_norm_momentum(0.0, 50) == pytest.approx(0.98)
    assert batch_norm_momentum(0.0, 133) == 0.99  # ChestXRay2017: capped
    assert batch_norm_momentum(0.95, 133) == 0.95  # an explicit value wins
