"""Keras -> TFLite (float and int8), each checked against the Keras model's own outputs.

A converter bug or a quantisation that breaks the model would otherwise only show in production; so the
float model must match Keras closely (an error if not) and the int8 model's agreement is measured and
recorded in ``model.json``.
"""

from __future__ import annotations

import contextlib
import io
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np
import tensorflow as tf

from medimage.core.errors import ExportError

FLOAT_MAX_ABS_DIFF = 1e-3  # softmax outputs; the float conversion is exact up to float rounding


def _convert(converter: tf.lite.TFLiteConverter) -> bytes:
    # The converter prints its SavedModel signature on stdout; keep the training log readable.
    with contextlib.redirect_stdout(io.StringIO()):
        return bytes(converter.convert())


def to_tflite_float(model: Any) -> bytes:
    return _convert(tf.lite.TFLiteConverter.from_keras_model(model))


def logits_model(model: Any) -> Any:
    """The same network ending in the final Dense layer's logits instead of its softmax.

    Quantising a softmax output puts probabilities on a 1/256 grid, which ties close cases and throws
    away the ranking AUC measures; logits on an int8 grid keep it, and serving applies the softmax in
    float (``model.json`` ``outputs``)."""
    import keras

    head = model.get_layer("probabilities")
    logits = keras.layers.Dense(head.units, activation=None, name="logits")(head.input)
    clone = keras.Model(model.inputs, logits, name=f"{model.name}_logits")
    clone.get_layer("logits").set_weights(head.get_weights())
    return clone


def to_tflite_int8(model: Any, calibration: np.ndarray, samples: int = 200, seed: int = 0) -> bytes:
    """Int8 weights and activations (per-channel weights, the converter's default), calibrated on training
    images (raw 0..255 arrays); float32 input and logits output, so serving feeds the same array as to the
    float model and the probabilities keep their resolution."""
    rng = np.random.default_rng(seed)
    chosen = calibration[rng.permutation(len(calibration))[:samples]]

    def representative() -> Iterator[list[np.ndarray]]:
        for image in chosen:
            yield [image[None, ...].astype(np.float32)]

    converter = tf.lite.TFLiteConverter.from_keras_model(logits_model(model))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.float32
    converter.inference_output_type = tf.float32
    return _convert(converter)


def ensure_interpreter_available() -> None:
    """Let the serving classifier run where neither LiteRT nor tflite-runtime is installed.

    The SageMaker TensorFlow container may lack ``ai-edge-litert`` (``requirements.txt`` asks for it);
    TensorFlow's own interpreter has the same API, so it is registered as the legacy fallback module
    that ``medimage.inference.model`` already knows.
    """
    try:
        import ai_edge_litert.interpreter  # noqa: F401

        return
    except ImportError:
        pass
    try:
        import tflite_runtime.interpreter  # noqa: F401

        return
    except ImportError:
        pass
    import types

    package = types.ModuleType("tflite_runtime")
    module = types.ModuleType("tflite_runtime.interpreter")
    module.Interpreter = tf.lite.Interpreter  # type: ignore[attr-defined]
    package.interpreter = module  # type: ignore[attr-defined]
    sys.modules.setdefault("tflite_runtime", package)
    sys.modules.setdefault("tflite_runtime.interpreter", module)


def compare(reference: np.ndarray, candidate: np.ndarray) -> dict[str, float]:
    """Largest probability difference and the share of images given the same top class."""
    return {
        "max_abs_diff": round(float(np.max(np.abs(reference - candidate))), 6),
        "top1_agreement": round(float(np.mean(reference.argmax(1) == candidate.argmax(1))), 6),
        "n": len(reference),
    }


def check_agreement(
    reference: np.ndarray, candidate: np.ndarray, tolerance: float = FLOAT_MAX_ABS_DIFF
) -> dict[str, float]:
    """Keras outputs vs. the served float model's: an ExportError when they differ beyond tolerance."""
    result = compare(reference, candidate)
    if result["max_abs_diff"] > tolerance:
        raise ExportError(
            f"the served TFLite model disagrees with Keras: max |probability difference| "
            f"{result['max_abs_diff']} > {tolerance} (a conversion fault, or training and serving "
            "preprocess images differently)"
        )
    return result
