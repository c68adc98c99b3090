"""The Android graph: the trained network behind an RGB input that becomes the model's gray input inside.

The Task Library (and ML Model Binding) hands a classifier ``1 x sH x sW x 3`` pixels (``s`` =
`SUPERSAMPLE`); the trained network takes ``1 x H x W x 1`` gray values 0..255. Between them sit a block
average (see `SUPERSAMPLE`) and, before it, the luma that serving gets from Pillow's
``Image.convert("L")`` (ITU-R 601-2, in Pillow's integer form ``(19595 R + 38470 G + 7471 B + 32768) >> 16``),
computed exactly in float32: every term is an integer below 2**24, the division is by a power of two, and
the floor makes it the same integer Pillow stores. So an RGB image through this graph gets the same answer
as its ``convert("L")`` through the served model.

The input is float32 holding 0..255 (metadata normalisation mean 0, std 1): the Task Library normalises
float inputs with the metadata, ML Model Binding's generated ``ImageProcessor`` does the same, and a raw
uint8 input would need quantisation parameters a float network does not have. The output is the network's
softmax probabilities, float32, the only output (the served file's class-activation maps stay out: the
Task Library's classifier expects one classification head).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from medimage.core.errors import AndroidExportError

# Pillow's RGB -> L weights (libImaging/Convert.c, L24) over 2**16, and its rounding term.
LUMA_WEIGHTS = (19595.0, 38470.0, 7471.0)
LUMA_ROUNDING = 32768.0
LUMA_SCALE = 65536.0
INPUT_NAME = "image"
# The Android input is this many times the network's size on a side, box-averaged down inside the graph. The
# Task Library resizes a camera or file bitmap to the input with plain bilinear sampling (no low-pass
# filter): straight to 128 px, a 2,000 px X-ray aliases into texture the network reads as opacity, while
# serving's Pillow resize filters. Sampling at SUPERSAMPLE x the size and averaging brings the two together.
SUPERSAMPLE = 4
# The largest |probability difference| between the Android graph and the served float model on the same
# pixels: both run the same float network, so only float rounding differs.
MAX_PROBABILITY_DIFF = 1e-4


def load_network(path: Path) -> Any:
    """``model.keras`` as saved by the trainer (its custom layers registered by importing the model
    module), without compiling: only inference is needed."""
    import keras

    import medimage.training.model  # noqa: F401  (registers PerImageStandardization)

    try:
        return keras.models.load_model(path, compile=False)
    except Exception as exc:  # Keras raises many types for an unreadable or foreign file
        raise AndroidExportError(
            f"{path} cannot be loaded as a Keras model ({type(exc).__name__}: {exc})", "bad_keras_model"
        ) from None


def rgb_network(network: Any, supersample: int = 1) -> Any:
    """``network`` (gray input ``H x W x 1``, softmax output) behind an ``sH x sW x 3`` float input
    (``s`` = ``supersample``), averaged over ``s x s`` blocks down to the network's size inside the graph."""
    import keras

    shape = tuple(network.inputs[0].shape[1:])
    if len(shape) != 3 or shape[-1] != 1 or shape[0] is None or shape[1] is None:
        raise AndroidExportError(
            f"the network's input is {list(shape)}; the Android export takes a fixed-size gray "
            "(H x W x 1) model",
            "bad_keras_model",
        )
    height, width = int(shape[0]), int(shape[1])
    if supersample < 1:
        raise ValueError(f"supersample must be at least 1, got {supersample}")
    inputs = keras.Input((height * supersample, width * supersample, 3), name=INPUT_NAME, dtype="float32")
    weights = keras.ops.convert_to_tensor(np.asarray(LUMA_WEIGHTS, dtype=np.float32))
    weighted = keras.ops.sum(inputs * weights, axis=-1, keepdims=True) + LUMA_ROUNDING
    gray = keras.ops.floor(weighted / LUMA_SCALE)
    if supersample > 1:
        gray = keras.layers.AveragePooling2D(supersample, name="box_downscale")(gray)
    probabilities = network(gray)
    return keras.Model(inputs, probabilities, name=f"{network.name}_rgb")


def to_tflite(model: Any) -> bytes:
    """The float TFLite flatbuffer (no quantisation: the served float model's numbers)."""
    import contextlib
    import io

    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    with contextlib.redirect_stdout(io.StringIO()):  # the converter prints its signature
        return bytes(converter.convert())


def image_size(network: Any) -> tuple[int, int]:
    """(height, width) of a model's image input."""
    shape = network.inputs[0].shape
    return int(shape[1]), int(shape[2])
