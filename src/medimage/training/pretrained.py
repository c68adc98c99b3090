"""ImageNet weights for the MobileNetV2 backbone, from wherever the job can reach them.

In order: a file or folder given with ``--pretrained-weights``; the SageMaker input channel
``pretrained`` (``SM_CHANNEL_PRETRAINED``, for network-isolated jobs); Keras' own download (where the job
has the internet); the folder named by ``MEDIMAGE_PRETRAINED_DIR``. The first that applies is used, and
a source that is named but unusable is one clear error rather than a silent fall-back.

The offline file is Keras' MobileNetV2 converted to TFLite with post-training quantisation: int8 weights
with one scale per output channel, int32 biases, batch normalisation folded into each convolution. Its
convolutions run in the same order as the Keras layers, so each one's dequantised kernel and bias go to the
matching Keras convolution, and the batch normalisation after it becomes the identity plus that bias.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medimage.training.data import TrainingInputError

PRETRAINED_DIR_ENV = "MEDIMAGE_PRETRAINED_DIR"
PRETRAINED_CHANNEL_ENV = "SM_CHANNEL_PRETRAINED"
MOBILENET_V2_FILE = "tf2_mobilenet_v2_1.0_224_ptq.tflite"
KERAS_SIZES = (96, 128, 160, 192, 224)  # the input sizes Keras publishes MobileNetV2 weights for
_BN_EPSILON = 1e-3  # keras.applications.MobileNetV2's


@dataclass(frozen=True)
class WeightSource:
    """Where the starting weights came from: ``kind`` is file, channel, keras-download or pretrained-dir."""

    kind: str
    path: Path | None = None

    def describe(self) -> str:
        if self.path is None:
            return f"ImageNet MobileNetV2 weights from {self.kind}"
        return f"ImageNet MobileNetV2 weights from {self.kind} {self.path}"


def weight_file(location: Path) -> Path:
    """The MobileNetV2 TFLite file at ``location`` (the file itself, or a folder that holds it)."""
    path = location / MOBILENET_V2_FILE if location.is_dir() else location
    if not path.is_file():
        raise TrainingInputError(
            f"no ImageNet MobileNetV2 weights at {location}: expected {MOBILENET_V2_FILE} "
            "(see ../shared/data/README.md, pretrained/)"
        )
    return path


def resolve_source(given: str, env: dict[str, str], image_size: int, try_download: Any) -> WeightSource:
    """The first usable source, in the order of the module docstring; ``try_download(image_size)``
    returns True where Keras could fetch its weights."""
    if given:
        return WeightSource("file", weight_file(Path(given)))
    channel = env.get(PRETRAINED_CHANNEL_ENV)
    if channel:
        return WeightSource("channel", weight_file(Path(channel)))
    if image_size in KERAS_SIZES and try_download(image_size):
        return WeightSource("keras-download")
    folder = env.get(PRETRAINED_DIR_ENV)
    if folder:
        return WeightSource("pretrained-dir", weight_file(Path(folder)))
    raise TrainingInputError(
        "cannot load ImageNet weights for MobileNetV2: Keras could not download them and none were given; "
        f"pass --pretrained-weights FILE, a 'pretrained' input channel, or set {PRETRAINED_DIR_ENV}; "
        "or train from scratch with --weights none"
    )


def keras_download(image_size: int) -> bool:
    """True when Keras' ImageNet MobileNetV2 weights for this size are cached or downloadable."""
    try:
        mobilenet_v2(image_size, weights="imagenet")
    except Exception:  # no network, a proxy, an HTTP error: the next source is tried
        return False
    return True


def _dequantised(details: dict[str, Any], values: np.ndarray) -> np.ndarray:
    params = details["quantization_parameters"]
    scales, zero_points = params["scales"], params["zero_points"]
    if len(scales) == 0:
        return values.astype(np.float32)
    axis = params["quantized_dimension"]
    shape = [1] * values.ndim
    shape[axis] = len(scales)
    return ((values.astype(np.float32) - zero_points.reshape(shape)) * scales.reshape(shape)).astype(
        np.float32
    )


def read_tflite_convolutions(path: Path) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """``(op, kernel, bias)`` of every convolution in execution order, dequantised to float32 (TFLite
    layouts: CONV_2D ``[out, h, w, in]``, DEPTHWISE_CONV_2D ``[1, h, w, channels]``)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    try:
        interpreter = Interpreter(
            model_path=str(path),
            experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        )
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise TrainingInputError(f"{path} is not a readable TFLite model: {exc}") from None
    details = {t["index"]: t for t in interpreter.get_tensor_details()}
    convolutions = []
    for op in interpreter._get_ops_details():
        if op["op_name"] not in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            continue
        _, kernel_index, bias_index = (int(i) for i in op["inputs"])
        kernel = _dequantised(details[kernel_index], interpreter.get_tensor(kernel_index))
        bias = _dequantised(details[bias_index], interpreter.get_tensor(bias_index))
        convolutions.append((op["op_name"], kernel, bias))
    return convolutions


def load_tflite_weights(backbone: Any, path: Path, classifier: Any | None = None) -> int:
    """Copy the TFLite file's convolutions into a Keras MobileNetV2 (``include_top=False``) and, when given,
    its 1x1 classifier into ``classifier`` (a Dense layer of 1001 ImageNet classes, background first).

    Returns the number of layers set; a file whose convolutions do not match the network is an error."""
    import keras

    convolutions = read_tflite_convolutions(path)
    layers = [
        layer
        for layer in backbone.layers
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D))
    ]
    expected = len(layers) + (1 if classifier is not None else 0)
    if len(convolutions) < len(layers) or (classifier is not None and len(convolutions) != expected):
        raise TrainingInputError(
            f"{path} is not an ImageNet MobileNetV2: {len(convolutions)} convolutions, "
            f"the network has {expected}"
        )
    by_name = {layer.name: layer for layer in backbone.layers}
    for layer, (op, kernel, bias) in zip(layers, convolutions, strict=False):
        depthwise = isinstance(layer, keras.layers.DepthwiseConv2D)
        if depthwise != (op == "DEPTHWISE_CONV_2D"):
            raise TrainingInputError(f"{path}: {op} where the network has {layer.name}")
        # TFLite [out, h, w, in] -> Keras [h, w, in, out]; depthwise [1, h, w, c] -> [h, w, c, 1].
        keras_kernel = kernel[0][..., None] if depthwise else kernel.transpose(1, 2, 3, 0)
        if tuple(layer.kernel.shape) != keras_kernel.shape:
            raise TrainingInputError(
                f"{path}: {layer.name} expects a kernel {tuple(layer.kernel.shape)}, the file has "
                f"{keras_kernel.shape} (not the width-1.0 MobileNetV2)"
            )
        layer.kernel.assign(keras_kernel)
        norm = by_name[_batch_norm_after(layer.name)]
        # Folded batch norm: the identity (gamma 1, mean 0, variance 1 - epsilon) then the folded bias.
        norm.set_weights(
            [
                np.ones_like(bias),
                bias,
                np.zeros_like(bias),
                np.full_like(bias, 1.0 - _BN_EPSILON),
            ]
        )
    if classifier is not None:
        _, kernel, bias = convolutions[-1]
        classifier.set_weights([kernel[:, 0, 0, :].T, bias])
    return len(layers)


def _batch_norm_after(conv_name: str) -> str:
    """Keras MobileNetV2's name for the batch normalisation that follows a convolution."""
    if conv_name == "Conv1":
        return "bn_Conv1"
    if conv_name == "Conv_1":
        return "Conv_1_bn"
    return f"{conv_name}_BN"


def mobilenet_v2(image_size: int, input_tensor: Any = None, weights: str | None = None) -> Any:
    """Keras' MobileNetV2 (width 1.0) without its top; on ``input_tensor`` when given (its layers then sit
    in the caller's graph)."""
    import keras

    return keras.applications.MobileNetV2(
        input_shape=(image_size, image_size, 3),
        input_tensor=input_tensor,
        include_top=False,
        weights=weights,
        alpha=1.0,
    )


def pretrained_mobilenet_v2(
    image_size: int, input_tensor: Any = None, given: str = "", env: dict[str, str] | None = None
) -> tuple[Any, WeightSource]:
    """The backbone (on ``input_tensor``) with ImageNet weights, and where they came from."""
    env = dict(os.environ) if env is None else env
    source = resolve_source(given, env, image_size, keras_download)
    if source.kind == "keras-download":
        return mobilenet_v2(image_size, input_tensor, weights="imagenet"), source
    backbone = mobilenet_v2(image_size, input_tensor)
    assert source.path is not None
    load_tflite_weights(backbone, source.path)
    return backbone, source
