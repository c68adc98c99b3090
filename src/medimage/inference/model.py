"""A TFLite classifier run by the LiteRT interpreter (never full TensorFlow).

A model directory holds ``model.tflite``, ``labels.txt`` and ``model.json``; ``model.json`` describes the
preprocessing, so nothing else is needed to serve it. The interpreter is created once and reused.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medimage.core.errors import ModelError
from medimage.core.preprocess import PreprocessSpec, load_image_array

try:  # the maintained LiteRT runtime
    from ai_edge_litert.interpreter import Interpreter
except ImportError:  # pragma: no cover - the legacy runtime, same API
    from tflite_runtime.interpreter import Interpreter  # type: ignore[no-redef]

MODEL_JSON = "model.json"
LABELS_TXT = "labels.txt"
DEFAULT_MODEL_FILE = "model.tflite"


@dataclass(frozen=True)
class Prediction:
    label: str
    probabilities: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "probabilities": self.probabilities}


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
    """One loaded model: preprocess bytes exactly as in training, run the interpreter, map labels."""

    def __init__(
        self,
        model_content: bytes,
        labels: list[str],
        spec: PreprocessSpec,
        meta: dict[str, Any],
        outputs: str = "probabilities",
    ):
        self.labels = labels
        self.spec = spec
        self.meta = meta
        self.outputs = outputs
        self.sha256 = hashlib.sha256(model_content).hexdigest()
        try:
            self._interpreter = Interpreter(model_content=model_content, num_threads=1)
            self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"the TFLite model cannot be loaded: {exc}") from None
        self._input = self._interpreter.get_input_details()[0]
        self._output = self._interpreter.get_output_details()[0]
        n_out = int(self._output["shape"][-1])
        if n_out != len(labels):
            raise ModelError(f"the model has {n_out} outputs but {len(labels)} labels")
        self._lock = threading.Lock()

    @classmethod
    def from_dir(cls, model_dir: str | Path, model_file: str | None = None) -> TFLiteClassifier:
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
        return cls(content, labels, spec, meta, output_kind(meta, path.name))

    @classmethod
    def from_file(cls, model_path: str | Path) -> TFLiteClassifier:
        """A ``.tflite`` file with its ``model.json`` beside it."""
        path = Path(model_path)
        if path.is_dir():
            return cls.from_dir(path)
        return cls.from_dir(path.parent, path.name)

    def _quantize(self, batch: np.ndarray) -> np.ndarray:
        dtype = self._input["dtype"]
        if dtype == np.float32:
            return batch.astype(np.float32)
        scale, zero = self._input["quantization"]
        info = np.iinfo(dtype)
        return np.clip(np.round(batch / scale + zero), info.min, info.max).astype(dtype)

    def _dequantize(self, out: np.ndarray) -> np.ndarray:
        if out.dtype == np.float32:
            return out
        scale, zero = self._output["quantization"]
        return (out.astype(np.float32) - zero) * scale

    def predict_array(self, array: np.ndarray) -> np.ndarray:
        """Class probabilities for one preprocessed HxWxC array."""
        batch = self._quantize(array[None, ...])
        with self._lock:
            self._interpreter.set_tensor(self._input["index"], batch)
            self._interpreter.invoke()
            out = self._interpreter.get_tensor(self._output["index"])[0]
        values = self._dequantize(out)
        return softmax(values) if self.outputs == "logits" else values

    def predict_bytes(self, data: bytes) -> Prediction:
        probs = self.predict_array(load_image_array(data, self.spec))
        return self.to_prediction(probs)

    def to_prediction(self, probs: np.ndarray) -> Prediction:
        best = int(np.argmax(probs))
        return Prediction(
            label=self.labels[best],
            probabilities={label: round(float(p), 6) for label, p in zip(self.labels, probs, strict=True)},
        )
