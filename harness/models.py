"""The one tiny Keras -> TFLite classifier that tests and benchmarks build: seeded and untrained, because
what they need is a real model that the serving path loads and answers with, in a second, not a good one.

Gray input -> rescaling to 0..1 -> strided 3x3 ReLU convolutions (the last named ``features``) -> global
average pooling -> a softmax head named as the trainer's (``probabilities``): the head the trainer's export
turns into class-activation maps. A test that needs the trainer's own network uses
``medimage.training.model.compact_cnn`` instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

LABELS = ("normal", "pneumonia")
IMAGE_SIZE = 32


def tiny_keras_model(
    labels: Sequence[str] = LABELS,
    *,
    image_size: int = IMAGE_SIZE,
    seed: int = 3,
    filters: int = 4,
    convs: int = 1,
    padding: str = "valid",
) -> Any:
    """The Keras network, its weights drawn from ``seed``; ``convs`` convolutions of ``filters`` each."""
    import tensorflow as tf

    from medimage.training.export import HEAD_LAYER

    keras = tf.keras
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((image_size, image_size, 1), name="image")
    x = keras.layers.Rescaling(1.0 / 255)(inputs)
    for i in range(convs):
        name = "features" if i == convs - 1 else None
        x = keras.layers.Conv2D(filters, 3, strides=2, padding=padding, activation="relu", name=name)(x)
    x = keras.layers.GlobalAveragePooling2D(name="pooled")(x)
    outputs = keras.layers.Dense(len(labels), activation="softmax", name=HEAD_LAYER)(x)
    return keras.Model(inputs, outputs)


def tiny_tflite_model(
    labels: Sequence[str] = LABELS, *, image_size: int = IMAGE_SIZE, seed: int = 3, filters: int = 4
) -> bytes:
    """The float TFLite model of `tiny_keras_model` (softmax output only)."""
    from medimage.training.export import to_tflite_float

    model = tiny_keras_model(labels, image_size=image_size, seed=seed, filters=filters)
    return to_tflite_float(model, explain=False)


def write_tiny_model_dir(
    out: Path,
    labels: Sequence[str],
    *,
    image_size: int = 64,
    seed: int = 1,
    filters: int = 8,
    convs: int = 1,
    explain: bool = True,
    keras_file: bool = False,
) -> Any:
    """A model directory's model files as the trainer exports them: ``model.tflite`` (float, with the
    class-activation maps unless ``explain`` is off), ``model-int8.tflite`` (calibrated on 8 noise images
    drawn from ``seed``), ``labels.txt`` and, with ``keras_file``, ``model.keras``. model.json is the
    caller's. Returns the Keras model."""
    import numpy as np

    from medimage.training.export import to_tflite_float, to_tflite_int8

    model = tiny_keras_model(labels, image_size=image_size, seed=seed, filters=filters, convs=convs)
    out.mkdir(parents=True, exist_ok=True)
    if keras_file:
        model.save(out / "model.keras")
    (out / "model.tflite").write_bytes(to_tflite_float(model, explain=explain))
    rng = np.random.default_rng(seed)
    calibration = rng.uniform(0, 255, (8, image_size, image_size, 1)).astype(np.float32)
    (out / "model-int8.tflite").write_bytes(to_tflite_int8(model, calibration, samples=8, explain=explain))
    (out / "labels.txt").write_text("\n".join(labels) + "\n", encoding="utf-8")
    return model
