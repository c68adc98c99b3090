"""The Android model from the pipeline: the trainer writes it into the model directory (so it travels in
model.tar.gz) and records why not where it cannot; promote copies it beside the served model."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from PIL import Image

from medimage.android import graph
from medimage.android.package import MODEL_DIR_FILE, classify_with_task_library, model_dir_entry
from medimage.cli.main import main as cli
from medimage.services.promote import PromoteRefused, PromoteRequest, PromoteService
from tests.android.conftest import IMAGE_SIZE, LABELS
from tests.fakes import InMemoryArtifacts, InMemoryObjectStore, InMemoryPointerStore

DS = "chestxray2017-binary"
URI = f"s3://fake-bucket/training/{DS}/v1/output/model.tar.gz"


def test_the_trainer_step_writes_the_android_model_and_its_model_json_entry(
    model_dir: Path, tflite_python: Path, tmp_path: Path
) -> None:
    meta = json.loads((model_dir / "model.json").read_text(encoding="utf-8"))
    lines: list[str] = []
    entry = model_dir_entry(graph.load_network(model_dir / "model.keras"), meta, tmp_path, lines.append)
    assert entry["file"] == MODEL_DIR_FILE and entry["associated_files"] == ["labels.txt"]
    assert entry["check"]["max_abs_diff"] <= graph.MAX_PROBABILITY_DIFF
    assert entry["tflite_support"] == "0.4.4"
    assert lines and lines[0].startswith(f"android: wrote {MODEL_DIR_FILE}")
    image = tmp_path / "gray.png"
    Image.new("L", (IMAGE_SIZE, IMAGE_SIZE), 90).save(image)
    answer = classify_with_task_library(tmp_path / MODEL_DIR_FILE, [image], tflite_python)
    assert sorted(c["label"] for c in answer["results"][0]["categories"]) == LABELS


def test_without_the_tflite_support_environment_the_trainer_records_why(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEDIMAGE_TFLITE_SUPPORT_PYTHON", str(tmp_path / "absent" / "python"))
    meta = json.loads((model_dir / "model.json").read_text(encoding="utf-8"))
    lines: list[str] = []
    entry = model_dir_entry(graph.load_network(model_dir / "model.keras"), meta, tmp_path, lines.append)
    assert entry["file"] is None and entry["code"] == "tflite_support_missing"
    assert "CPython 3.9-3.11" in entry["reason"] and "medimage export android" in entry["reason"]
    assert lines == [f"android: no {MODEL_DIR_FILE} written [tflite_support_missing]: {entry['reason']}"]
    assert not (tmp_path / MODEL_DIR_FILE).exists()


def promote_world(android: dict | None, files_extra: dict[str, bytes]) -> tuple[InMemoryObjectStore, dict]:
    store, registry = InMemoryObjectStore(), InMemoryPointerStore()
    meta = {"manifest_version": "m1", "model_file": "model.tflite", "android": android}
    files = {
        "model.tflite": b"served",
        "model.json": json.dumps(meta).encode(),
        "labels.txt": b"normal\npneumonia\n",
        "evaluation.json": b"{}",
        **files_extra,
    }
    metrics = {"manifest_version": "m1", "accuracy": 0.95, "recall": {}, "labels": LABELS, "n": 10}
    store.put_bytes(f"models/{DS}/v1/gate.json", json.dumps({"passed": True, "metrics": metrics}).encode())
    service = PromoteService(
        store, registry, InMemoryArtifacts({URI: files}), now=lambda: datetime(2026, 12, 1, tzinfo=UTC)
    )
    event = {
        "dataset": DS,
        "bucket": "fake-bucket",
        "training": {"TrainingJobName": "v1", "ModelArtifacts": {"S3ModelArtifacts": URI}},
        "gate": {"passed": True, "version": "v1"},
    }
    return store, service.run(PromoteRequest.from_event(event))


def test_promote_copies_the_android_model_beside_the_served_one() -> None:
    store, result = promote_world({"file": MODEL_DIR_FILE}, {MODEL_DIR_FILE: b"android model"})
    assert store.get_bytes(f"models/{DS}/v1/{MODEL_DIR_FILE}") == b"android model"
    assert store.get_bytes(f"models/{DS}/v1/model.tflite") == b"served"
    assert result["android_key"] == f"models/{DS}/v1/{MODEL_DIR_FILE}"


def test_promote_of_a_model_without_an_android_file_says_so() -> None:
    store, result = promote_world({"file": None, "code": "tflite_support_missing", "reason": "..."}, {})
    assert result["android_key"] is None
    assert not store.exists(f"models/{DS}/v1/{MODEL_DIR_FILE}")


def test_promote_refuses_a_model_json_naming_an_android_file_the_archive_lacks() -> None:
    with pytest.raises(PromoteRefused, match=MODEL_DIR_FILE):
        promote_world({"file": MODEL_DIR_FILE}, {})


@pytest.mark.slow
def test_a_training_run_without_the_environment_still_succeeds_and_model_json_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.training.conftest import make_tree

    monkeypatch.setenv("MEDIMAGE_TFLITE_SUPPORT_PYTHON", str(tmp_path / "absent" / "python"))
    tree = make_tree(tmp_path / "tree", per_class=12, size=24)
    out = tmp_path / "model"
    args = ["--epochs", "1", "--image-size", "32", "-H", "batch-size=8"]
    code = cli(["train", "--data", str(tree), "--preset", "folders", "--out", str(out), *args])
    assert code == 0, (out / "output" / "train.log").read_text()
    android = json.loads((out / "model.json").read_text())["android"]
    assert android["file"] is None and android["code"] == "tflite_support_missing"
    assert not (out / MODEL_DIR_FILE).exists() and (out / "model.tflite").is_file()
