"""Data for the `sam local invoke` tests: names, events, a tiny real model, SageMaker-shaped outputs."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from pathlib import Path
from typing import Any

from samlocal import REPO

from harness.models import write_tiny_model_dir

BUCKET = "medimage-data-example"  # the bucket named in events/*.json
TABLE = "medimage-catalog"
EVENTS = REPO / "events"
SHARED_DATA = Path(os.environ.get("MEDIMAGE_SHARED_DATA", REPO.parent / "shared" / "data"))
XRAYS = SHARED_DATA / "chestxray2017-val-fullres"


def load_event(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / name).read_text(encoding="utf-8"))


def xray_files() -> list[Path]:
    return sorted(XRAYS.glob("*/*.jpeg")) if XRAYS.is_dir() else []


def build_model_dir(out: Path, labels: list[str], image_size: int = 64, seed: int = 1) -> Path:
    """A tiny CNN (seeded, untrained; ``harness.models``) converted to float and int8 TFLite, with labels.txt
    (model.json rides in the tarball); enough for the serving path to return one of the labels."""
    write_tiny_model_dir(out, labels, image_size=image_size, seed=seed, explain=False)
    return out


def evaluation(labels: list[str], accuracy: float, recall: float, n: int = 30) -> dict[str, Any]:
    per_class = {
        lab: {"precision": recall, "recall": recall, "f1": recall, "support": n // len(labels)}
        for lab in labels
    }
    k = n // len(labels)
    right = round(k * recall)
    matrix = [
        [right if i == j else (k - right if j == (i + 1) % len(labels) else 0) for j in range(len(labels))]
        for i in range(len(labels))
    ]
    metrics = {
        "n": n,
        "accuracy": accuracy,
        "per_class": per_class,
        "macro_auc": accuracy,
        "confusion_matrix": matrix,
        "labels": labels,
    }
    return {"val": metrics, "test": metrics}


def model_tarball(model_dir: Path, meta: dict[str, Any], evaluation_json: dict[str, Any]) -> bytes:
    """model.tar.gz as SageMaker packs SM_MODEL_DIR."""
    files = {p.name: p.read_bytes() for p in model_dir.iterdir() if p.is_file()}
    files["model.json"] = json.dumps(meta).encode()
    files["evaluation.json"] = json.dumps(evaluation_json).encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
