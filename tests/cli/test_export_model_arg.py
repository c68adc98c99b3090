"""`medimage export android --model` takes a model directory or a file in it, as predict, evaluate and
serve do. The export itself needs TensorFlow and tflite-support (tests/android); here a model directory
without model.keras stops it right after --model is resolved, with an error that names the directory."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from medimage.cli.common import model_directory


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "M"
    folder.mkdir()
    (folder / "model.tflite").write_bytes(b"tflite")
    (folder / "model.json").write_text('{"labels": ["a", "b"]}', encoding="utf-8")
    return folder


def test_a_model_file_resolves_to_its_directory(model_dir: Path, tmp_path: Path) -> None:
    assert model_directory(model_dir) == model_dir
    assert model_directory(model_dir / "model.tflite") == model_dir
    assert model_directory(tmp_path / "missing") == tmp_path / "missing"  # the export says it is not there


@pytest.mark.parametrize("given", ["M", "M/model.tflite"])
def test_export_android_reads_the_directory_of_a_model_file(
    cli: Callable[..., Any], model_dir: Path, tmp_path: Path, given: str
) -> None:
    run = cli("export", "android", "--model", str(tmp_path / given), "--out", str(tmp_path / "out"))
    assert run.code == 2
    assert "[no_keras_model]" in run.err and f"{model_dir} has no model.keras" in run.err
    assert "is not a model directory" not in run.err


def test_export_android_still_refuses_a_missing_model(cli: Callable[..., Any], tmp_path: Path) -> None:
    run = cli("export", "android", "--model", str(tmp_path / "nope"), "--out", str(tmp_path / "out"))
    assert run.code == 2 and "[model_not_found]" in run.err
