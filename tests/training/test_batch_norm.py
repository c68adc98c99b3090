"""Batch-norm statistics recomputed from clean images equal the images' own statistics."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.slow


def test_recomputed_statistics_are_the_images_mean_and_variance() -> None:
    import keras

    from medimage.training.model import compact_cnn, reestimate_batch_norm

    # GIVEN a model whose moving statistics are stale (set far from anything the images give)
    model = compact_cnn(16, 1, 2, width=4, bn_momentum=0.99)
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in norms:
        layer.moving_mean.assign(np.full(layer.moving_mean.shape, 50.0, np.float32))
        layer.moving_variance.assign(np.full(layer.moving_variance.shape, 9.0, np.float32))
    images = np.random.default_rng(0).uniform(0, 255, (100, 16, 16, 1)).astype(np.float32)

    # WHEN they are recomputed in batches of 64 (two unequal batches)
    assert reestimate_batch_norm(model, images, batch_size=64) == len(norms)

    # THEN the first layer's moving mean is the mean of its input over the images (batch means averaged),
    # its variance the average batch variance, and the layers' own momentum is back
    first = norms[0]
    conv_out = keras.Model(model.input, first.input)(images).numpy()
    batches = [conv_out[:64], conv_out[64:]]
    expected_mean = np.mean([b.mean(axis=(0, 1, 2)) for b in batches], axis=0)
    expected_var = np.mean([b.var(axis=(0, 1, 2)) for b in batches], axis=0)
    np.testing.assert_allclose(first.moving_mean.numpy(), expected_mean, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(first.moving_variance.numpy(), expected_var, rtol=1e-3, atol=1e-5)
    assert all(layer.momentum == 0.99 for layer in norms)
    assert all(float(np.abs(layer.moving_mean.numpy() - 50.0).min()) > 1.0 for layer in norms)
