"""Training-time augmentation: what differs between one hospital's X-rays/OCT scans and another's.

A model that is right on its own validation split can still be wrong on images from another scanner,
site or year (on ChestXRay2017 the official test split runs about 8 points below a patient-grouped
validation split). The changes drawn here are the ones such a shift brings:

- geometry: patient position and field of view (rotation, translation, zoom), and a different aspect
  ratio before the image was squeezed to a square (independent zoom in x and y);
- acquisition: exposure and display curve (gamma, contrast, brightness), detector sharpness and the
  vendor's edge enhancement (blur or unsharp mask), quantum noise;
- mixup: convex combinations of two images and of their labels, which keeps the network's confidence
  honest between the classes instead of saturating on whatever cue separates the training images.

No horizontal flip by default: anatomy is not left-right symmetric (the heart sits on the left), and a
flipped chest is not an image the model will ever be asked about. Everything here runs only in the
input pipeline, so the exported graph holds nothing but inference ops. Random draws come from one
seeded generator in a sequential map, so a run is reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from keras import layers


@dataclass(frozen=True)
class AugmentConfig:
    geometric: bool = True
    horizontal_flip: bool = False
    aspect_jitter: float = 0.25  # independent zoom in x and y, up to this fraction
    acquisition: bool = False
    acquisition_probability: float = 0.5  # share of images changed; the rest stay as acquired
    mixup_alpha: float = 0.0  # Beta(alpha, alpha) mixing weights; 0 turns mixup off


def geometric_augmenter(seed: int, config: AugmentConfig) -> keras.Sequential:
    """Position, field of view and aspect ratio, plus the basic contrast/brightness jitter."""
    zoom = (-0.1 - config.aspect_jitter / 2, 0.1)
    steps: list[layers.Layer] = [
        layers.RandomRotation(0.03, fill_mode="constant", seed=seed),  # about ±11°
        layers.RandomTranslation(0.06, 0.06, fill_mode="constant", seed=seed + 1),
        # Different height and width factors change the aspect ratio as well as the scale.
        layers.RandomZoom(zoom, zoom if config.aspect_jitter else None, fill_mode="constant", seed=seed + 2),
        layers.RandomContrast(0.2, value_range=(0, 255), seed=seed + 3),
        layers.RandomBrightness(0.1, value_range=(0, 255), seed=seed + 4),
    ]
    if config.horizontal_flip:
        steps.insert(0, layers.RandomFlip("horizontal", seed=seed + 5))
    return keras.Sequential(steps, name="augment")


def _gaussian_kernel(sigma: float, channels: int) -> tf.Tensor:
    radius = int(np.ceil(2 * sigma))
    t = np.arange(-radius, radius + 1, dtype=np.float32)
    g = np.exp(-(t**2) / (2 * sigma**2))
    kernel = np.outer(g, g) / np.outer(g, g).sum()
    return tf.constant(np.repeat(kernel[:, :, None, None], channels, axis=2), dtype=tf.float32)


class AcquisitionJitter:
    """Per-image gamma, blur or sharpening, and noise on a batch of 0..255 float images."""

    def __init__(
        self,
        seed: int,
        channels: int,
        probability: float = 1.0,
        max_gamma: float = 1.4,
        max_noise: float = 6.0,
    ) -> None:
        self.rng = tf.random.Generator.from_seed(seed)
        self.probability = probability
        self.kernel = _gaussian_kernel(1.0, channels)
        self.pad = int(self.kernel.shape[0]) // 2
        self.log_gamma = float(np.log(max_gamma))
        self.max_noise = max_noise

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        batch = tf.shape(x)[0]
        per_image = (batch, 1, 1, 1)
        original = x
        gamma = tf.exp(self.rng.uniform(per_image, -self.log_gamma, self.log_gamma))
        x = 255.0 * tf.pow(tf.clip_by_value(x / 255.0, 1e-6, 1.0), gamma)
        padded = tf.pad(x, [[0, 0], [self.pad, self.pad], [self.pad, self.pad], [0, 0]], mode="REFLECT")
        blurred = tf.nn.depthwise_conv2d(padded, self.kernel, strides=[1, 1, 1, 1], padding="VALID")
        # amount > 0 blurs towards a softer detector, < 0 is an unsharp mask (vendor edge enhancement).
        amount = self.rng.uniform(per_image, -0.6, 0.8)
        x = x + amount * (blurred - x)
        sigma = self.rng.uniform(per_image, 0.0, self.max_noise)
        x = x + sigma * self.rng.normal(tf.shape(x))
        # Some images stay as acquired: a network that never sees an unchanged image during training
        # fits its batch-normalisation statistics to changed ones, and its validation accuracy swings.
        changed = self.rng.uniform(per_image) < self.probability
        return tf.where(changed, tf.clip_by_value(x, 0.0, 255.0), original)


class Mixup:
    """Mix each example with another of the same batch: images, one-hot targets and sample weights."""

    def __init__(self, seed: int, alpha: float) -> None:
        self.rng = tf.random.Generator.from_seed(seed)
        self.alpha = alpha

    def __call__(self, x: tf.Tensor, target: tf.Tensor, weight: tf.Tensor) -> tuple[Any, Any, Any]:
        batch = tf.shape(x)[0]
        seeds = self.rng.make_seeds(2)
        a = tf.random.stateless_gamma((batch,), seeds[:, 0], alpha=self.alpha)
        b = tf.random.stateless_gamma((batch,), seeds[:, 1], alpha=self.alpha)
        lam = a / (a + b + 1e-12)
        lam = tf.maximum(lam, 1.0 - lam)  # the first image dominates: its weight stays the larger one
        order = self.rng.uniform((batch,))
        partner = tf.argsort(order)
        lam_x = tf.reshape(lam, (batch, 1, 1, 1))
        lam_y = tf.reshape(lam, (batch, 1))
        x = lam_x * x + (1.0 - lam_x) * tf.gather(x, partner)
        target = lam_y * target + (1.0 - lam_y) * tf.gather(target, partner)
        weight = lam * weight + (1.0 - lam) * tf.gather(weight, partner)
        return x, target, weight


def batch_augmenter(seed: int, channels: int, config: AugmentConfig) -> Any:
    """A ``(x, target, weight) -> (x, target, weight)`` function for ``tf.data.Dataset.map``."""
    geometric = geometric_augmenter(seed, config) if config.geometric else None
    acquisition = (
        AcquisitionJitter(seed + 10, channels, config.acquisition_probability) if config.acquisition else None
    )
    mixup = Mixup(seed + 20, config.mixup_alpha) if config.mixup_alpha > 0 else None

    def apply(x: Any, target: Any, weight: Any) -> tuple[Any, Any, Any]:
        x = tf.cast(x, tf.float32)
        if geometric is not None:
            x = tf.clip_by_value(geometric(x, training=True), 0.0, 255.0)
        if acquisition is not None:
            x = acquisition(x)
        if mixup is not None:
            x, target, weight = mixup(x, target, weight)
        return x, target, weight

    return apply
