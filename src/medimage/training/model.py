"""The networks: a compact from-scratch CNN, or a classifier on an ImageNet MobileNetV2 backbone.

Both take raw 0..255 pixels and rescale inside the model (CONTRACTS), so serving feeds exactly what
``load_image_array`` returns. Augmentation (``augment.py``) runs only in the input pipeline, so the
exported graph holds nothing but inference ops.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import layers

from medimage.core.errors import ExportError


def _conv(
    x: keras.KerasTensor, filters: int, weight_decay: float, bn_momentum: float, strides: int = 1
) -> keras.KerasTensor:
    x = layers.Conv2D(
        filters,
        3,
        strides=strides,
        padding="same",
        use_bias=False,
        kernel_regularizer=keras.regularizers.l2(weight_decay) if weight_decay else None,
    )(x)
    x = layers.BatchNormalization(momentum=bn_momentum)(x)
    return layers.ReLU()(x)


@keras.saving.register_keras_serializable(package="medimage")
class PerImageStandardization(layers.Layer):
    """Each image to zero mean and unit variance: exposure and contrast settings drop out.

    Images from another scanner or site differ first in their intensity distribution; a network that
    sees standardised pixels cannot use overall brightness as a cue for the class. Inside the model, so
    serving needs nothing new (TFLite runs it as MEAN, SUB, MUL, RSQRT).
    """

    def call(self, x: keras.KerasTensor) -> keras.KerasTensor:
        mean = keras.ops.mean(x, axis=(1, 2, 3), keepdims=True)
        variance = keras.ops.mean(keras.ops.square(x - mean), axis=(1, 2, 3), keepdims=True)
        return (x - mean) * keras.ops.rsqrt(variance + 1e-4)


def compact_cnn(
    image_size: int,
    channels: int,
    n_classes: int,
    width: int = 16,
    dropout: float = 0.3,
    weight_decay: float = 1e-4,
    standardize: bool = False,
    bn_momentum: float = 0.9,
) -> keras.Model:
    """About 0.6 M parameters at width 16: a strided stem, then conv blocks halving the resolution.

    The stride-2 stem keeps the cost of the full-resolution layers low (the expensive part on CPUs),
    batch normalisation makes it train quickly from scratch, and global average pooling plus dropout
    keeps the head small so the model cannot memorise a few thousand images.
    """
    inputs = keras.Input((image_size, image_size, channels), name="image")
    x = layers.Rescaling(1.0 / 255.0, name="rescale_0_1")(inputs)
    if standardize:
        x = PerImageStandardization(name="per_image_standardization")(x)
    x = _conv(x, width, weight_decay, bn_momentum, strides=2)
    x = _conv(x, 2 * width, weight_decay, bn_momentum)
    x = layers.MaxPooling2D()(x)
    for filters in (4 * width, 8 * width):
        x = _conv(x, filters, weight_decay, bn_momentum)
        x = _conv(x, filters, weight_decay, bn_momentum)
        x = layers.MaxPooling2D()(x)
    x = _conv(x, 16 * width, weight_decay, bn_momentum)
    x = layers.GlobalAveragePooling2D(name="pooled")(x)  # its input is the map the CAM export weighs
    x = layers.Dropout(dropout)(x)
    outputs = layers.Dense(n_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="medimage_cnn")


def reestimate_batch_norm(model: keras.Model, images: np.ndarray, batch_size: int = 64) -> int:
    """Batch-norm statistics recomputed from these images with the current weights; returns the layers.

    The moving averages kept during training mix the statistics of many past weights (and, with a weight
    average, of weights the model never had), so an epoch judged with them can be far off what its
    weights can do. Recomputed as stochastic weight averaging does: a cumulative average in which batch k
    enters with momentum k/(k+1).
    """
    norms = [layer for layer in model._flatten_layers() if isinstance(layer, layers.BatchNormalization)]
    momenta = [layer.momentum for layer in norms]
    try:
        for k, start in enumerate(range(0, len(images), batch_size)):
            for layer in norms:
                layer.momentum = k / (k + 1)
            model(images[start : start + batch_size], training=True)
    finally:
        for layer, momentum in zip(norms, momenta, strict=True):
            layer.momentum = momentum
    return len(norms)


# The layer whose pooled activations the novelty score reads (`medimage.training.novelty`): measured on
# the fine-tuned chest model, the mid-to-late expansion layers still tell a photograph, an OCT scan or a
# document from any X-ray (all of them beyond every validation image, clean or shifted), where the
# penultimate features, fine-tuned to tell the classes apart, place a photograph among the X-rays.
MOBILENET_V2_NOVELTY_LAYER = "block_16_expand_relu"
# By architecture (the model's name); any other model's score reads the feature map its head pools.
NOVELTY_LAYERS = {"medimage_mobilenetv2": MOBILENET_V2_NOVELTY_LAYER}


def mobilenet_v2_classifier(
    image_size: int, channels: int, n_classes: int, backbone_factory: Any, dropout: float = 0.3
) -> tuple[keras.Model, keras.Model]:
    """A classifier on a MobileNetV2 backbone, and the backbone (for its weights).

    ``backbone_factory(input_tensor)`` builds Keras' MobileNetV2 on the rescaled input, so its layers
    sit in this model's own graph and an inner layer's output stays reachable (the novelty score reads
    one). Grayscale input is repeated to 3 channels and 0..255 rescaled to MobileNetV2's [-1, 1] inside
    the model. The backbone's batch normalisation is frozen, so it always runs in inference mode (a Keras
    3 layer called with ``training=False`` inside a model still follows the outer ``fit``'s training flag;
    a frozen one does not): the pretrained statistics, folded into the convolutions in the offline
    weights, stay as they are while the convolutions fine-tune, and a batch of 32 X-rays never
    re-normalises them. The pooling sits outside the backbone, so the feature map it pools is reachable
    for the class-activation maps.
    """
    inputs = keras.Input((image_size, image_size, channels), name="image")
    x = layers.Concatenate(name="gray_to_rgb")([inputs] * 3) if channels == 1 else inputs
    x = layers.Rescaling(1.0 / 127.5, offset=-1.0, name="rescale_minus1_1")(x)
    backbone = backbone_factory(x)
    for layer in backbone.layers:
        if isinstance(layer, layers.BatchNormalization):
            layer.trainable = False
    x = layers.GlobalAveragePooling2D(name="pooled")(backbone.output)
    x = layers.Dropout(dropout)(x)
    outputs = layers.Dense(n_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="medimage_mobilenetv2"), backbone


def feature_map_layer(model: Any) -> Any:
    """The global average pooling in front of the head; its input is the feature map the CAM weighs."""
    pools = [layer for layer in model.layers if isinstance(layer, keras.layers.GlobalAveragePooling2D)]
    if not pools:
        raise ExportError(
            f"model {model.name} has no top-level GlobalAveragePooling2D before its head; "
            "class-activation maps need the feature map it pools"
        )
    return pools[-1]
