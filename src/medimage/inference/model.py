"""A TFLite classifier run by the LiteRT interpreter (never full TensorFlow).

A model directory holds ``model.tflite``, ``labels.txt`` and ``model.json``; ``model.json`` describes the
preprocessing, so nothing else is needed to serve it. The interpreter is created once and reused.

A model may have a second output, class-activation maps ``[1, h, w, C]`` (per-cell logits whose spatial
mean is the logits), and a third, the novelty score ``[1]`` (`medimage.core.novelty`); outputs are told
apart by rank, never by position. ``model.json`` ``review`` holds the confidence threshold below which a
prediction goes to a clinician, and ``novelty`` the thresholds above which an image is too far from the
training images to be labeled automatically at all.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from medimage.core.errors import ModelError
from medimage.core.input_profile import InputProfile
from medimage.core.novelty import OUTSIDE_TRAINING_DISTRIBUTION, NoveltyPolicy
from medimage.core.preprocess import PreprocessSpec, load_image_array
from medimage.inference.review_policy import class_thresholds_of, review_decision, review_threshold_of

MODEL_JSON = "model.json"
LABELS_TXT = "labels.txt"
DEFAULT_MODEL_FILE = "model.tflite"


def resolve_interpreter(allow_tensorflow: bool = False) -> Any:
    """The TFLite ``Interpreter`` class: LiteRT, else the legacy tflite-runtime (same API).

    TensorFlow's own ``tf.lite.Interpreter`` (same API) only with ``allow_tensorflow``: the trainer in a
    SageMaker TensorFlow container that lacks LiteRT. Serving never asks for it, so the inference
    function never imports TensorFlow; without either runtime it gets the ImportError."""
    try:  # the maintained LiteRT runtime
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # pragma: no cover - the legacy runtime, same API
        try:
            from tflite_runtime.interpreter import Interpreter  # type: ignore[no-redef]
        except ImportError:
            if not allow_tensorflow:
                raise
            import tensorflow as tf

            return tf.lite.Interpreter
    return Interpreter


# Resolved at import, where serving's cold start has always paid for it. None only without either
# runtime: the trainer then passes resolve_interpreter(allow_tensorflow=True) to the classifier.
try:
    Interpreter: Any = resolve_interpreter()
except ImportError:  # pragma: no cover - a trainer container without LiteRT
    Interpreter = None


@dataclass(frozen=True)
class Prediction:
    """One image's answer. ``heatmap`` (explain only) is the predicted class's activation map at the
    model's feature-map resolution, min-max normalised to 0..1; it is not part of ``to_dict``."""

    label: str
    probabilities: dict[str, float]
    confidence: float = 0.0
    needs_review: bool = False
    review_reason: str | None = None
    heatmap: np.ndarray | None = field(default=None, compare=False, repr=False)
    novelty: float | None = None  # the model's novelty score, where it has one

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "probabilities": self.probabilities,
            "confidence": self.confidence,
            "needs_review": self.needs_review,
            "review_reason": self.review_reason,
            "novelty": self.novelty,
        }


def normalised_heatmap(cam: np.ndarray, index: int) -> np.ndarray:
    """Class ``index`` of an ``h x w x C`` map, scaled to 0..1 (all zeros when the map is flat)."""
    channel = cam[..., index].astype(np.float32)
    low, high = float(channel.min()), float(channel.max())
    if high - low <= 1e-12:
        return np.zeros_like(channel)
    return (channel - low) / (high - low)


def _optional_entry(meta: dict[str, Any], key: str, parse: Any) -> Any:
    """``model.json[key]`` parsed, None where absent (a model trained without it); a malformed entry is a
    ModelError."""
    raw = meta.get(key)
    if raw is None:
        return None
    try:
        return parse(raw)
    except ValueError as exc:
        raise ModelError(f"model.json {exc}") from None


def input_profile_of(meta: dict[str, Any]) -> InputProfile | None:
    """``model.json`` ``input_profile``, or None for a model trained without one."""
    return _optional_entry(meta, "input_profile", InputProfile.from_dict)  # type: ignore[no-any-return]


def novelty_policy_of(meta: dict[str, Any]) -> NoveltyPolicy | None:
    """``model.json`` ``novelty``, or None for a model trained without a novelty score."""
    return _optional_entry(meta, "novelty", NoveltyPolicy.from_dict)  # type: ignore[no-any-return]


def read_model_json(model_dir: Path) -> dict[str, Any]:
    path = model_dir / MODEL_JSON
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"{path} is missing: a model directory needs model.json") from None
    except json.JSONDecodeError as exc:
        raise ModelError(f"{path} is not valid JSON: {exc}") from None


OUTPUT_KINDS = ("probabilities", "logits")


def output_kind(meta: dict[str, Any], model_file: str) -> str:
    """What a model file of this directory outputs (``model.json`` ``outputs``; probabilities if unsaid):
    the int8 variant ends in logits, so its probabilities are not rounded to the int8 grid."""
    kind = str((meta.get("outputs") or {}).get(model_file, "probabilities"))
    if kind not in OUTPUT_KINDS:
        raise ModelError(f"model.json says {model_file} outputs '{kind}'; expected one of {OUTPUT_KINDS}")
    return kind


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - np.max(logits))
    return shifted / shifted.sum()


class TFLiteClassifier:
    """One loaded model: preprocess bytes exactly as in training, run the interpreter, map labels.

    ``review_threshold`` (a per-deployment setting) overrides ``model.json``'s ``review.threshold`` and
    ``review.class_thresholds`` (one figure for every label);
    ``supports_explain`` says whether the model has the class-activation output; ``interpreter`` (an
    ``Interpreter`` class, `resolve_interpreter`'s by default) lets the trainer run TensorFlow's.
    """

    def __init__(
        self,
        model_content: bytes,
        labels: list[str],
        spec: PreprocessSpec,
        meta: dict[str, Any],
        outputs: str = "probabilities",
        review_threshold: float | None = None,
        *,
        interpreter: Any = None,
    ):
        self.labels = labels
        self.spec = spec
        self.meta = meta
        self.outputs = outputs
        self._content = model_content  # the interpreter reads this buffer for its whole life
        self.review_threshold = (
            review_threshold if review_threshold is not None else review_threshold_of(meta)
        )
        self.class_thresholds = None if review_threshold is not None else class_thresholds_of(meta, labels)
        self.input_profile = input_profile_of(meta)
        self.novelty_policy = novelty_policy_of(meta)
        try:
            factory = interpreter or Interpreter or resolve_interpreter()
            self._interpreter = factory(model_content=model_content, num_threads=1)
            self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"the TFLite model cannot be loaded: {exc}") from None
        self._input = self._interpreter.get_input_details()[0]
        # A function giving a fresh view of the input tensor's buffer (no view may outlive an invoke).
        self._input_buffer = self._interpreter.tensor(self._input["index"])
        self._float_input = self._input["dtype"] == np.float32
        # An int8/uint8 input quantises 8-bit pixels by table: the same rounding as `_quantize`, done once.
        self._pixel_table = None if self._float_input else self._quantize(np.arange(256, dtype=np.uint8))
        self._output, self._cam, self._novelty = _find_outputs(
            self._interpreter.get_output_details(), len(labels)
        )
        if self.novelty_policy is not None and self._novelty is None:
            raise ModelError("model.json has a novelty policy but the model has no novelty output")
        self._lock = threading.Lock()

    @cached_property
    def sha256(self) -> str:
        """Hashed on request: a served model's bytes were already verified against the pointer's digest."""
        return hashlib.sha256(self._content).hexdigest()

    @property
    def review_policy(self) -> float | list[float] | None:
        """The confidence an answer needs to be labeled: one per label where the model has them."""
        return self.class_thresholds if self.class_thresholds is not None else self.review_threshold

    @property
    def supports_explain(self) -> bool:
        return self._cam is not None

    @property
    def heatmap_shape(self) -> tuple[int, int] | None:
        """(h, w) of the class-activation map, or None without one."""
        return None if self._cam is None else (int(self._cam["shape"][1]), int(self._cam["shape"][2]))

    @classmethod
    def from_dir(
        cls,
        model_dir: str | Path,
        model_file: str | None = None,
        review_threshold: float | None = None,
        *,
        interpreter: Any = None,
    ) -> TFLiteClassifier:
        model_dir = Path(model_dir)
        meta = read_model_json(model_dir)
        labels = list(meta.get("labels") or [])
        if not labels:
            raise ModelError(f"{model_dir / MODEL_JSON} lists no labels")
        path = model_dir / (model_file or meta.get("model_file") or DEFAULT_MODEL_FILE)
        try:
            content = path.read_bytes()
        except FileNotFoundError:
            raise ModelError(f"{path} is missing") from None
        spec = PreprocessSpec.from_dict(meta["preprocess"])
        return cls(
            content,
            labels,
            spec,
            meta,
            output_kind(meta, path.name),
            review_threshold,
            interpreter=interpreter,
        )

    @classmethod
    def from_file(cls, model_path: str | Path, review_threshold: float | None = None) -> TFLiteClassifier:
        """A ``.tflite`` file with its ``model.json`` beside it."""
        path = Path(model_path)
        if path.is_dir():
            return cls.from_dir(path, review_threshold=review_threshold)
        return cls.from_dir(path.parent, path.name, review_threshold)

    def _quantize(self, pixels: np.ndarray) -> np.ndarray:
        dtype = self._input["dtype"]
        scale, zero = self._input["quantization"]
        info = np.iinfo(dtype)
        return np.clip(np.round(pixels / scale + zero), info.min, info.max).astype(dtype)

    def _write_input(self, pixels: np.ndarray) -> None:
        """One HxWxC image (0..255 as uint8 pixels or floats) written into the input tensor's own buffer:
        a float model's input is filled by one converting copy, a quantised model's 8-bit pixels by one table
        lookup, with no batch array, float intermediate or set_tensor copy."""
        target = self._input_buffer()[0]
        if pixels.size != target.size:
            raise ValueError(f"the image array has shape {pixels.shape}; the model takes {target.shape}")
        pixels = pixels.reshape(target.shape)
        if self._pixel_table is not None and pixels.dtype == np.uint8:
            np.take(self._pixel_table, pixels, out=target, mode="clip")
            return
        source = pixels if self._float_input else self._quantize(pixels)
        np.copyto(target, source, casting="unsafe")

    @staticmethod
    def _dequantize(out: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
        if out.dtype == np.float32:
            return out
        scale, zero = detail["quantization"]
        return (out.astype(np.float32) - zero) * scale

    def run(self, array: np.ndarray, explain: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """Class probabilities for one preprocessed HxWxC array, and (explain on a model that has them)
        the ``h x w x C`` class-activation maps; without explain the maps are not read."""
        probs, cam, _ = self.run_scored(array, explain)
        return probs, cam

    def run_scored(
        self, array: np.ndarray, explain: bool = False
    ) -> tuple[np.ndarray, np.ndarray | None, float | None]:
        """`run`, plus the novelty score of the same invoke (None for a model without one)."""
        with self._lock:
            self._write_input(array)
            self._interpreter.invoke()
            out = self._interpreter.get_tensor(self._output["index"])[0]
            cam = self._interpreter.get_tensor(self._cam["index"])[0] if explain and self._cam else None
            raw_novelty = self._interpreter.get_tensor(self._novelty["index"]) if self._novelty else None
        values = self._dequantize(out, self._output)
        probs = softmax(values) if self.outputs == "logits" else values
        novelty = (
            None
            if raw_novelty is None
            else float(self._dequantize(raw_novelty, self._novelty).reshape(-1)[0])  # type: ignore[arg-type]
        )
        return probs, None if cam is None else self._dequantize(cam, self._cam), novelty  # type: ignore[arg-type]

    def outside_reason(self, array: np.ndarray, novelty: float | None) -> str | None:
        """Why this image is too far from the training images to label automatically, or None: the novelty
        policy first (it tells a foreign image from an unusual one), then the input profile."""
        if self.novelty_policy is not None and novelty is not None:
            reason = self.novelty_policy.reason(novelty)
            if reason is not None:
                return reason
        if self.input_profile is not None and bool(self.input_profile.outside(array)):
            return OUTSIDE_TRAINING_DISTRIBUTION
        return None

    def classify_array(
        self, array: np.ndarray, explain: bool = False, review_threshold: float | None = None
    ) -> Prediction:
        """A full `Prediction` for one preprocessed array (the decoded-image entry point of serving)."""
        probs, cam, novelty = self.run_scored(array, explain)
        outside = self.outside_reason(array, novelty)
        return self.to_prediction(probs, cam, review_threshold, outside, novelty)

    def predict_bytes(
        self, data: bytes, explain: bool = False, review_threshold: float | None = None
    ) -> Prediction:
        return self.classify_array(load_image_array(data, self.spec), explain, review_threshold)

    def to_prediction(
        self,
        probs: np.ndarray,
        cam: np.ndarray | None = None,
        review_threshold: float | None = None,
        outside: bool | str | None = False,
        novelty: float | None = None,
    ) -> Prediction:
        """Label, confidence and review decision; ``cam`` (h x w x C) becomes the predicted class's heatmap.

        ``review_threshold`` overrides the classifier's (one figure for every label); classes that borrow
        this method without a review policy of their own (the TensorFlow benchmark) get none."""
        best = int(np.argmax(probs))
        confidence = round(float(probs[best]), 6)  # decided on the figure reported (and scored)
        by_class = getattr(self, "class_thresholds", None)
        if review_threshold is not None:
            threshold: float | None = review_threshold
        elif by_class is not None:
            threshold = by_class[best]
        else:
            threshold = getattr(self, "review_threshold", None)
        needs_review, reason = review_decision(confidence, threshold, outside)
        return Prediction(
            label=self.labels[best],
            probabilities={label: round(float(p), 6) for label, p in zip(self.labels, probs, strict=True)},
            confidence=confidence,
            needs_review=needs_review,
            review_reason=reason,
            heatmap=None if cam is None else normalised_heatmap(cam, best),
            novelty=None if novelty is None else round(novelty, 4),
        )


def _find_outputs(
    details: list[dict[str, Any]], n_labels: int
) -> tuple[dict[str, Any], dict[str, Any] | None, dict[str, Any] | None]:
    """The class output ``[1, C]``, the optional activation maps ``[1, h, w, C]`` and the optional novelty
    score ``[1]``, told apart by rank (the converter does not keep the Keras output order)."""
    by_rank: dict[int, dict[str, Any]] = {}
    for detail in details:
        rank = len(detail["shape"])
        if rank not in (1, 2, 4) or rank in by_rank:
            raise ModelError(f"unexpected model outputs {[list(d['shape']) for d in details]}")
        by_rank[rank] = detail
    if 2 not in by_rank:
        raise ModelError(f"the model has no [1, classes] output: {[list(d['shape']) for d in details]}")
    for rank in (2, 4):
        if rank in by_rank and int(by_rank[rank]["shape"][-1]) != n_labels:
            raise ModelError(f"the model has {int(by_rank[rank]['shape'][-1])} outputs but {n_labels} labels")
    if 1 in by_rank and int(by_rank[1]["shape"][0]) != 1:
        raise ModelError(f"the novelty output has shape {list(by_rank[1]['shape'])}; expected [1]")
    return by_rank[2], by_rank.get(4), by_rank.get(1)
