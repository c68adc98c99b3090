"""The networks: a compact from-scratch CNN (the default), or an optional ImageNet backbone.

Both take raw 0..255 pixels and rescale inside the model (CONTRACTS), so serving feeds exactly what
``load_image_array`` returns. Augmentation is a separate block used only in the input pipeline, so the
exported graph holds nothing but inference ops.
"""

from __future__ import annotations

import keras
from keras import layers

from medimage.training.data import TrainingInputError


def _conv(x: keras.KerasTensor, filters: int, weight_decay: float, strides: int = 1) -> keras.KerasTensor:
    x = layers.Conv2D(
        filters, 3, strides=strides, padding="same", use_bias=False,
        kernel_regularizer=keras.regularizers.l2(weight_decay) if weight_decay else None,
    )(x)
    # momentum 0.9: the moving statistics settle within an epoch even on small datasets.
    x = layers.BatchNormalization(momentum=0.9)(x)
    return layers.ReLU()(x)


def compact_cnn(
    image_size: int, channels: int, n_classes: int, width: int = 16, dropout: float = 0.3,
    weight_decay: float = 1e-4,
) -> keras.Model:
    """About 0.6 M parameters at width 16: a strided stem, then conv blocks halving the resolution.

    The stride-2 stem keeps the cost of the full-resolution layers low (the expensive part on CPUs),
    batch normalisation makes it train quickly from scratch, and global average pooling plus dropout
    keeps the head small so the model cannot memorise a few thousand images.
    """
    inputs = keras.Input((image_size, image_size, channels), name="image")
    x = layers.Rescaling(1.0 / 255.0, name="rescale_0_1")(inputs)
    x = _conv(x, width, weight_decay, strides=2)
    x = _conv(x, 2 * width, weight_decay)
    x = layers.MaxPooling2D()(x)
    for filters in (4 * width, 8 * width):
        x = _conv(x, filters, weight_decay)
        x = _conv(x, filters, weight_decay)
        x = layers.MaxPooling2D()(x)
    x = _conv(x, 16 * width, weight_decay)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(dropout)(x)
    outputs = layers.Dense(n_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="medimage_cnn")


def imagenet_backbone(image_size: int, channels: int, n_classes: int, dropout: float = 0.3) -> keras.Model:
    """MobileNetV3Small with ImageNet weights (needs the internet to download them).

    Grayscale input is repeated to 3 channels; the backbone's own preprocessing layer rescales 0..255.
    """
    inputs = keras.Input((image_size, image_size, channels), name="image")
    x = layers.Concatenate(name="gray_to_rgb")([inputs] * 3) if channels == 1 else inputs
    try:
        backbone = keras.applications.MobileNetV3Small(
            input_shape=(image_size, image_size, 3), include_top=False, weights="imagenet",
            include_preprocessing=True, pooling="avg",
        )
    except Exception as exc:  # the download fails in many ways (no network, proxy, HTTP error)
        raise TrainingInputError(
            f"cannot load ImageNet weights for MobileNetV3Small ({type(exc).__name__}: {exc}); "
            "train without them with --weights none"
        ) from None
    x = backbone(x)
    x = layers.Dropout(dropout)(x)
    outputs = layers.Dense(n_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="medimage_mobilenetv3")


def augmenter(seed: int, horizontal_flip: bool = False) -> keras.Sequential:
    """Small geometric and photometric changes that real X-ray/OCT acquisitions show.

    No horizontal flip by default: anatomy is not left-right symmetric (the heart sits on the left), and
    a flipped chest is not an image the model will ever be asked about.
    """
    steps: list[layers.Layer] = [
        layers.RandomRotation(0.03, fill_mode="constant", seed=seed),  # about ±11°
        layers.RandomTranslation(0.06, 0.06, fill_mode="constant", seed=seed + 1),
        layers.RandomZoom((-0.1, 0.1), fill_mode="constant", seed=seed + 2),
        layers.RandomContrast(0.2, value_range=(0, 255), seed=seed + 3),
        layers.RandomBrightness(0.1, value_range=(0, 255), seed=seed + 4),
    ]
    if horizontal_flip:
        steps.insert(0, layers.RandomFlip("horizontal", seed=seed + 5))
    return keras.Sequential(steps, name="augment")
