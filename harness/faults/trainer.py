"""A trainer that stands in for train.py in fault tests and benchmarks: it follows the SageMaker
script-mode contract of the local SageMaker (``LocalSageMaker(trainer=...)``) and writes a model directory
with a real (tiny, untrained) TFLite model (``harness.models``), so a training execution takes about a
second."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path

from harness.models import IMAGE_SIZE, LABELS
from medimage.core.preprocess import PreprocessSpec


@dataclass
class QuickRun:
    ok: bool
    seconds: float = 0.1
    metrics: dict[str, float] = field(default_factory=dict)
    failure_reason: str | None = None


@dataclass
class QuickTrainer:
    """Writes the model directory (the TFLite model of ``harness.models.tiny_tflite_model``, model.json,
    labels.txt, evaluation.json with ``accuracy`` on as many test images as the test channel lists).
    ``fail`` makes the job fail; ``barrier`` holds each job until that many are training, so their
    executions finish at once."""

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
