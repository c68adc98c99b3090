"""Fixtures of the Android export tests: a small model directory made here (the trainer's compact CNN with
seeded random weights, saved in the trainer's layout) and the tflite-support environment.

No training: the export's promise is that the Android file answers as the served model does, whatever
the weights.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from medimage.core.preprocess import PreprocessSpec

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = Path(os.environ.get("MEDIMAGE_SHARED_DATA", REPO.parent / "shared" / "data"))
FULLRES = SHARED_DATA / "chestxray2017-val-fullres"
LABELS = ["normal", "pneumonia"]
IMAGE_SIZE = 64


def build_model_dir(out: Path, seed: int = 3, image_size: int = IMAGE_SIZE) -> Path:
    """model.keras, model.tflite (as the trainer exports it), labels.txt and model.json."""
    import keras

    from medimage.training import export
    from medimage.training.model import compact_cnn
    from medimage.training.package import save_keras

    keras.utils.set_random_seed(seed)
    model = compact_cnn(image_size, 1, len(LABELS), width=4, standardize=True)
    out.mkdir(parents=True, exist_ok=True)
    save_keras(model, out / "model.keras")
    (out / "model.tflite").write_bytes(export.to_tflite_float(model))
    (out / "labels.txt").write_text("\n".join(LABELS) + "\n", encoding="utf-8")
    meta = {
        "format_version": 1,
        "labels": LABELS,
        "preprocess": PreprocessSpec(image_size=image_size, channels=1).to_dict(),
        "model_file": "model.tflite",
        "float_model_file": "model.tflite",
        "keras_model_file": "model.keras",
        "outputs": {"model.tflite": "probabilities"},
        "preset": "chestxray2017-binary",
        "dataset": "chestxray2017-binary",
        "manifest_version": f"test-{seed}",
        "trained_at": "2026-11-25T00:00:00+00:00",
    }
    (out / "model.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return out


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_model_dir(tmp_path_factory.mktemp("android-model"))


@pytest.fixture(scope="session")
def tflite_python() -> Path:
    """The tflite-support environment; `make test` makes it, so its absence is a failure, not a skip."""
    from medimage.android.package import tflite_support_python

    return tflite_support_python()
