"""Keras -> TFLite (float and int8), each checked against the Keras model's own outputs.

A converter bug or a quantisation that breaks the model would otherwise only show in production; so the
float model must match Keras closely (an error if not) and the int8 model's agreement is measured and
recorded in ``model.json``.

Both files carry a second output, the class-activation maps (CAM, Zhou et al., 2016): the final Dense
layer applied to every cell of the last feature map, ``[1, h, w, C]`` per-cell logits whose spatial mean
is exactly the logits (the head is global average pooling, dropout, Dense). It is one tiny op beside the
classifier in the same graph, never a second model.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from medimage.core.errors import ExportError
from medimage.core.novelty import ClassGaussians

FLOAT_MAX_ABS_DIFF = 1e-3  # softmax outputs; the float conversion is exact up to float rounding
HEAD_LAYER = "probabilities"
CAM_OUTPUT = "class_activation_maps"
# Mean |difference| of the served 0..1 heatmaps, int8 vs. float (measured: see docs/CONTRACTS.md).
CAM_INT8_TOLERANCE = 0.05


def _convert(converter: tf.lite.TFLiteConverter) -> bytes:
    # The converter prints its SavedModel signature on stdout; keep the training log readable.
    with contextlib.redirect_stdout(io.StringIO()):
        return bytes(converter.convert())


def to_tflite_float(model: Any, explain: bool = True, novelty: ClassGaussians | None = None) -> bytes:
    """Softmax output, plus the class-activation maps (`explained_model`) unless ``explain`` is off, and
    the novelty score where ``novelty`` is given."""
    network = explained_model(model, novelty=novelty) if explain or novelty is not None else model
    return _convert(tf.lite.TFLiteConverter.from_keras_model(network))


def _copy_of_head(head: Any, name: str, inputs: Any) -> Any:
    import keras

    layer = keras.layers.Dense(head.units, activation=None, name=name)
    out = layer(inputs)
    layer.set_weights(head.get_weights())
    return out


def explained_model(model: Any, logits: bool = False, novelty: ClassGaussians | None = None) -> Any:
    """The same network with two outputs: probabilities (or, with ``logits``, the final Dense layer's
    logits) ``[1, C]``, and the class-activation maps ``[1, h, w, C]`` (the head's Dense applied to each
    cell of the pooled feature map, so their spatial mean equals the logits); and a third, the novelty
    score ``[1]`` (`medimage.training.novelty`), where ``novelty`` is given."""
    import keras

    from medimage.training.model import feature_map_layer
    from medimage.training.novelty import novelty_features, novelty_head

    head = model.get_layer(HEAD_LAYER)
    first = _copy_of_head(head, "logits", head.input) if logits else model.outputs[0]
    pooling = feature_map_layer(model)
    outputs = [first, _copy_of_head(head, CAM_OUTPUT, pooling.input)]
    if novelty is not None:
        outputs.append(novelty_head(novelty_features(model), novelty))
    suffix = ("_logits_cam" if logits else "_cam") + ("_novelty" if novelty is not None else "")
    return keras.Model(model.inputs, outputs, name=f"{model.name}{suffix}")


def logits_model(model: Any) -> Any:
    """The same network ending in the final Dense layer's logits instead of its softmax.

    Quantising a softmax output puts probabilities on a 1/256 grid, which ties close cases and throws
    away the ranking AUC measures; logits on an int8 grid keep it, and serving applies the softmax in
    float (``model.json`` ``outputs``)."""
    import keras

    head = model.get_layer(HEAD_LAYER)
    return keras.Model(model.inputs, _copy_of_head(head, "logits", head.input), name=f"{model.name}_logits")


# The heads run in float inside the int8 model. The novelty score's: a distance summed over hundreds of
# whitened features has no int8 range that holds both a training image's score and a photograph's. The
# classifier's (the logits and the class-activation maps): their few thousand multiply-adds cost nothing
# measurable in float beside the backbone, and the probabilities lose no resolution.
FLOAT_HEAD_OPS = (
    "FULLY_CONNECTED",
    "SQUARED_DIFFERENCE",
    "SUB",
    "SQUARE",
    "SUM",
    "REDUCE_MIN",
    "MUL",
    "DIV",
    "MAXIMUM",
)


def calibration_order(count: int, samples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the training images the int8 calibration sees, and of the rest in a fixed order: the
    mixed-precision choice (`medimage.training.mixed_precision`) checks on images calibration did not see."""
    order = np.random.default_rng(seed).permutation(count)
    return order[:samples], order[samples:]


def int8_debugger(
    model: Any,
    calibration: np.ndarray,
    samples: int = 200,
    seed: int = 0,
    explain: bool = True,
    novelty: ClassGaussians | None = None,
) -> Any:
    """The converter's quantisation debugger for the int8 model `to_tflite_int8` describes, calibrated:
    it measures each layer's rounding error on the calibration's training images (``run``), and
    `quantised_model` turns it into the int8 file."""
    chosen = calibration[calibration_order(len(calibration), samples, seed)[0]].astype(np.float32)
    seen = chosen
    if novelty is not None:
        from medimage.training.novelty import far_images

        seen = np.concatenate([chosen, far_images(chosen, seed)])

    def representative() -> Iterator[list[np.ndarray]]:
        for image in seen:
            yield [image[None, ...]]

    def training_images() -> Iterator[list[np.ndarray]]:
        for image in chosen:
            yield [image[None, ...]]

    if novelty is not None:
        network = explained_model(model, logits=True, novelty=novelty)
    else:
        network = explained_model(model, logits=True) if explain else logits_model(model)
    converter = tf.lite.TFLiteConverter.from_keras_model(network)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.inference_input_type = tf.float32
    converter.inference_output_type = tf.float32
    converter.target_spec.supported_ops = [
        tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
        tf.lite.OpsSet.TFLITE_BUILTINS,
    ]
    options = tf.lite.experimental.QuantizationDebugOptions(denylisted_ops=list(FLOAT_HEAD_OPS))
    with contextlib.redirect_stdout(io.StringIO()):
        return tf.lite.experimental.QuantizationDebugger(
            converter=converter, debug_dataset=training_images, debug_options=options
        )


def to_tflite_int8(
    model: Any,
    calibration: np.ndarray,
    samples: int = 200,
    seed: int = 0,
    explain: bool = True,
    novelty: ClassGaussians | None = None,
    float_layers: Sequence[str] = (),
) -> bytes:
    """Int8 weights and activations (per-channel weights, the converter's default), calibrated on training
    images (raw 0..255 arrays); float32 input and logits output, so serving feeds the same array as to the
    float model and the probabilities keep their resolution. The class-activation maps (unless
    ``explain`` is off) come out as float32 too: the heads stay float (`FLOAT_HEAD_OPS`), and so do the
    ``float_layers`` (output tensor names, `medimage.training.mixed_precision`). With ``novelty``, the
    calibration also sees images unlike any training image, so the features they give are not clipped to
    the training images' range."""
    return quantised_model(int8_debugger(model, calibration, samples, seed, explain, novelty), float_layers)


def quantised_model(debugger: Any, float_layers: Sequence[str] = ()) -> bytes:
    """The int8 model of a calibrated `int8_debugger`, with ``float_layers`` (and the heads) float: each
    call only re-quantises the calibrated graph, so trying several sets costs one calibration."""
    debugger.options = tf.lite.experimental.QuantizationDebugOptions(
        denylisted_ops=list(FLOAT_HEAD_OPS), denylisted_nodes=list(float_layers)
    )
    with contextlib.redirect_stdout(io.StringIO()):
        content = bytes(debugger.get_nondebug_quantized_model())
    names, quantised = tensor_names(content)
    wrong = sorted((set(float_layers) - names) | (set(float_layers) & quantised))
    if wrong:
        raise ExportError(f"layers meant to stay float are quantised or not in the graph: {wrong[:3]}")
    return content


def tensor_names(content: bytes) -> tuple[set[str], set[str]]:
    """A TFLite model's tensor names, all of them and those with an int8 tensor (a quantised layer's
    output; a float op reading it sees a dequantised copy under the same name)."""
    from medimage.inference.model import resolve_interpreter

    details = resolve_interpreter(allow_tensorflow=True)(model_content=content).get_tensor_details()
    return {d["name"] for d in details}, {d["name"] for d in details if d["dtype"] == np.int8}


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


def _normalised(cams: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Each image's map of its class (n x h x w), min-max scaled to 0..1 as serving shows it."""
    maps = cams[np.arange(len(cams)), ..., classes].astype(np.float64)
    low = maps.min(axis=(1, 2), keepdims=True)
    span = maps.max(axis=(1, 2), keepdims=True) - low
    return np.where(span > 1e-12, (maps - low) / np.where(span > 1e-12, span, 1.0), 0.0)


def check_cam_agreement(reference: np.ndarray, candidate: np.ndarray) -> dict[str, float]:
    """Keras's class-activation maps vs. the float export's (raw per-cell logits, n x h x w x C): an
    ExportError beyond float rounding, relative to the maps' own scale."""
    scale = max(1.0, float(np.max(np.abs(reference))))
    diff = float(np.max(np.abs(reference - candidate)))
    if diff > FLOAT_MAX_ABS_DIFF * scale:
        raise ExportError(
            f"the float model's class-activation maps disagree with Keras: max |difference| {diff:.6f} "
            f"> {FLOAT_MAX_ABS_DIFF * scale:.6f}"
        )
    return {"max_abs_diff": round(diff, 6), "scale": round(scale, 6), "n": len(reference)}


def compare_cams(reference: np.ndarray, candidate: np.ndarray, tolerance: float) -> dict[str, Any]:
    """Two exports' heatmaps of the reference's predicted class, normalised as served: the mean and
    largest cell difference, the mean Pearson correlation, and the share with the same hottest cell;
    ``within_tolerance`` when the mean difference is at most ``tolerance``."""
    classes = reference.mean(axis=(1, 2)).argmax(axis=1)
    a, b = _normalised(reference, classes), _normalised(candidate, classes)
    flat_a, flat_b = a.reshape(len(a), -1), b.reshape(len(b), -1)
    centred_a = flat_a - flat_a.mean(axis=1, keepdims=True)
    centred_b = flat_b - flat_b.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(centred_a, axis=1) * np.linalg.norm(centred_b, axis=1)
    correlation = np.where(
        norms > 0, (centred_a * centred_b).sum(axis=1) / np.where(norms > 0, norms, 1.0), 1.0
    )
    mean_abs = float(np.mean(np.abs(a - b)))
    return {
        "mean_abs_diff": round(mean_abs, 6),
        "max_abs_diff": round(float(np.max(np.abs(a - b))), 6),
        "mean_correlation": round(float(np.mean(correlation)), 6),
        "peak_agreement": round(float(np.mean(flat_a.argmax(1) == flat_b.argmax(1))), 6),
        "tolerance": tolerance,
        "within_tolerance": mean_abs <= tolerance,
        "n": len(reference),
    }
