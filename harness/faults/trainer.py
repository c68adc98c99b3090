"""A trainer that stands in for train.py in fault tests and benchmarks: it follows the SageMaker
script-mode contract of the local SageMaker (``LocalSageMaker(trainer=...)``) and writes a model directory
with a real (tiny, untrained) TFLite model, so a training execution takes about a second."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path

from medimage.core.preprocess import PreprocessSpec

LABELS = ("normal", "pneumonia")
IMAGE_SIZE = 32


def tiny_tflite_model(labels: tuple[str, ...] = LABELS, seed: int = 3) -> bytes:
    """A real, untrained TFLite classifier of ``labels`` on 32x32 gray input (softmax output)."""
    import tensorflow as tf

    keras = tf.keras
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input((IMAGE_SIZE, IMAGE_SIZE, 1)),
            keras.layers.Rescaling(1.0 / 255),
            keras.layers.Conv2D(4, 3, strides=2, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(len(labels), activation="softmax"),
        ]
    )
    return bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())


@dataclass
class QuickRun:
    ok: bool
    seconds: float = 0.1
    metrics: dict[str, float] = field(default_factory=dict)
    failure_reason: str | None = None


@dataclass
class QuickTrainer:
    """Writes the model directory (the TFLite model, model.json, labels.txt, evaluation.json with
    ``accuracy`` on as many test images as the test channel lists). ``fail`` makes the job fail;
    ``barrier`` holds each job until that many are training, so their executions finish at once."""

    model: bytes
    accuracy: float = 0.95
    fail: bool = False
    barrier: threading.Barrier | None = None
    labels: tuple[str, ...] = LABELS
    jobs: list[str] = field(default_factory=list)

    def __call__(
        self, channels: dict[str, Path], hyperparameters: dict[str, str], model_dir: Path, output_dir: Path
    ) -> QuickRun:
        self.jobs.append(hyperparameters.get("manifest-version", ""))
        if self.barrier is not None:
            self.barrier.wait(60)
        if self.fail:
            return QuickRun(ok=False, failure_reason="the job ran out of memory")
        labels = list(self.labels)
        model_dir.mkdir(parents=True, exist_ok=True)
        (model_dir / "model.tflite").write_bytes(self.model)
        (model_dir / "labels.txt").write_text("\n".join(labels) + "\n", encoding="utf-8")
        test_rows = sum(len(p.read_text().splitlines()) - 1 for p in channels["test"].rglob("*.csv"))
        split = {
            "n": test_rows,
            "accuracy": self.accuracy,
            "per_class": {label: {"recall": self.accuracy, "support": 5} for label in labels},
            "macro_auc": self.accuracy,
            "labels": labels,
        }
        (model_dir / "evaluation.json").write_text(
            json.dumps({"val": split, "test": split}), encoding="utf-8"
        )
        meta = {
            "format_version": 1,
            "labels": labels,
            "preprocess": PreprocessSpec(image_size=IMAGE_SIZE, channels=1).to_dict(),
            "model_file": "model.tflite",
            "float_model_file": "model.tflite",
            "outputs": {"model.tflite": "probabilities"},
            "manifest_version": hyperparameters.get("manifest-version"),
        }
        (model_dir / "model.json").write_text(json.dumps(meta), encoding="utf-8")
        output_dir.mkdir(parents=True, exist_ok=True)
        return QuickRun(ok=True, metrics={"test:accuracy": self.accuracy})
