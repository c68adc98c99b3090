"""`medimage export android`: the Task Library loads the file, reads its labels and normalisation from the
metadata, and answers as the served LiteRT model does."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from medimage.android.graph import SUPERSAMPLE
from medimage.android.package import classify_with_task_library
from medimage.cli.main import main
from medimage.inference.model import TFLiteClassifier
from tests.android.conftest import FULLRES, IMAGE_SIZE, LABELS

# Same pixels in: the Android graph and the served model run the same float network.
SAME_PIXELS_TOLERANCE = 1e-4
# A full-resolution X-ray: the Task Library resizes the RGB bitmap (bilinear, to SUPERSAMPLE x the size,
# then the graph block-averages), serving decodes in JPEG draft mode and resizes the gray image with
# Pillow's filtered resize; the scores differ by that much at most.
RESIZED_TOLERANCE = 0.02


@pytest.fixture(scope="module")
def exported(model_dir: Path, tflite_python: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("android-out")
    assert main(["export", "android", "--model", str(model_dir), "--out", str(out)]) == 0
    return out / "chestxray2017_binary.tflite"


@pytest.fixture(scope="module")
def colour_images(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Path, Path]]:
    """Pairs of PNGs whose channels differ (the luma weights matter) and span 0..255: one at the model's
    size for serving, and the same pixels as SUPERSAMPLE x SUPERSAMPLE blocks at the Android input's size
    (no resize by the Task Library; the graph's block average gives back the small image's gray)."""
    folder = tmp_path_factory.mktemp("colour")
    rng = np.random.default_rng(7)
    pairs = []
    for k in range(6):
        pixels = rng.integers(0, 256, (IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
        pixels[..., k % 3] //= 3
        small, large = folder / f"colour-{k}.png", folder / f"colour-{k}-android.png"
        Image.fromarray(pixels, "RGB").save(small)
        Image.fromarray(pixels.repeat(SUPERSAMPLE, 0).repeat(SUPERSAMPLE, 1), "RGB").save(large)
        pairs.append((small, large))
    return pairs


def scores(result: dict[str, Any]) -> dict[str, float]:
    return {category["label"]: category["score"] for category in result["categories"]}


def served(model_dir: Path, path: Path) -> dict[str, float]:
    classifier = TFLiteClassifier.from_dir(model_dir)
    return classifier.predict_bytes(path.read_bytes()).probabilities


def test_the_readme_says_where_the_file_goes_and_how_to_call_it(exported: Path) -> None:
    readme = (exported.parent / "README.md").read_text(encoding="utf-8")
    assert "app/src/main/ml/" in readme and "app/src/main/assets/" in readme
    assert "Chestxray2017Binary.newInstance(context)" in readme
    assert "probabilityAsCategoryList" in readme
    assert 'ImageClassifier.createFromFile(context, "chestxray2017_binary.tflite")' in readme
    assert "CC BY 4.0" in readme and "doi:10.17632/rscbjbr9sj.2" in readme


def test_metadata_has_labels_normalisation_size_and_attribution(
    exported: Path, colour_images: list[tuple[Path, Path]], tflite_python: Path
) -> None:
    answer = classify_with_task_library(exported, [colour_images[0][1]], tflite_python)
    meta = answer["metadata"]
    assert answer["associated_files"] == ["labels.txt"]
    (tensor_in,) = meta["subgraph_metadata"][0]["input_tensor_metadata"]
    (tensor_out,) = meta["subgraph_metadata"][0]["output_tensor_metadata"]
    assert tensor_in["content"]["content_properties"] == {
        "color_space": "RGB",
        "default_size": {"width": IMAGE_SIZE * SUPERSAMPLE, "height": IMAGE_SIZE * SUPERSAMPLE},
    }
    (normalisation,) = tensor_in["process_units"]
    assert normalisation["options"] == {"mean": [0.0], "std": [1.0]}
    assert tensor_in["stats"] == {"max": [255.0], "min": [0.0]}
    assert tensor_out["name"] == "probability"
    assert tensor_out["associated_files"][0]["type"] == "TENSOR_AXIS_LABELS"
    assert tensor_out["associated_files"][0]["name"] == "labels.txt"
    assert meta["name"] == "medimage chestxray2017-binary classifier"
    assert meta["version"] == "test-3"
    assert meta["author"] == "medimage"
    assert "CC BY 4.0" in meta["license"] and "Kermany" in meta["license"]
    assert "normal, pneumonia" in meta["description"]


def test_task_library_answers_as_the_served_model_on_the_same_pixels(
    exported: Path, model_dir: Path, colour_images: list[tuple[Path, Path]], tflite_python: Path
) -> None:
    answer = classify_with_task_library(exported, [large for _, large in colour_images], tflite_python)
    assert len(answer["results"]) == len(colour_images)
    for (small, _), result in zip(colour_images, answer["results"], strict=True):
        assert sorted(scores(result)) == sorted(LABELS)  # the labels come from the metadata
        expected = served(model_dir, small)
        got = scores(result)
        for label in LABELS:
            assert got[label] == pytest.approx(expected[label], abs=SAME_PIXELS_TOLERANCE)
        assert max(got, key=got.__getitem__) == max(expected, key=expected.__getitem__)
        assert sum(got.values()) == pytest.approx(1.0, abs=1e-4)  # probabilities, not logits


def test_task_library_agrees_with_the_served_model_on_real_xrays(
    exported: Path, model_dir: Path, tflite_python: Path
) -> None:
    images = sorted(FULLRES.glob("*/*.jpeg")) if FULLRES.is_dir() else []
    if not images:
        pytest.skip(f"no full-resolution X-rays at {FULLRES} (set MEDIMAGE_SHARED_DATA)")
    answer = classify_with_task_library(exported, images, tflite_python)
    for path, result in zip(images, answer["results"], strict=True):
        expected, got = served(model_dir, path), scores(result)
        for label in LABELS:
            assert got[label] == pytest.approx(expected[label], abs=RESIZED_TOLERANCE), path.name


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(argv)
    return code, capsys.readouterr().err


def test_missing_model_directory_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_cli(
        ["export", "android", "--model", str(tmp_path / "nothing"), "--out", str(tmp_path / "out")], capsys
    )
    assert code == 2
    assert "[model_not_found]" in err and "is not a model directory" in err
    assert not (tmp_path / "out").exists()


def test_model_directory_without_keras_model_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "model.tflite").write_bytes(b"x")
    code, err = run_cli(
        ["export", "android", "--model", str(tmp_path / "model"), "--out", str(tmp_path / "out")], capsys
    )
    assert code == 2
    assert "[no_keras_model]" in err and "model.keras" in err
    assert not (tmp_path / "out").exists()


def test_missing_tflite_support_environment_is_a_clear_error(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MEDIMAGE_TFLITE_SUPPORT_PYTHON", str(tmp_path / "no-venv" / "bin" / "python"))
    code, err = run_cli(
        ["export", "android", "--model", str(model_dir), "--out", str(tmp_path / "out")], capsys
    )
    assert code == 2
    assert "[tflite_support_missing]" in err and "make tflite-install" in err
    assert not (tmp_path / "out").exists()


def test_a_broken_model_json_is_a_clear_error(
    model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = tmp_path / "model"
    copy.mkdir()
    (copy / "model.keras").write_bytes((model_dir / "model.keras").read_bytes())
    (copy / "model.json").write_text(json.dumps({"labels": []}), encoding="utf-8")
    code, err = run_cli(["export", "android", "--model", str(copy), "--out", str(tmp_path / "out")], capsys)
    assert code == 2
    assert "[bad_model_json]" in err and "lists no labels" in err
