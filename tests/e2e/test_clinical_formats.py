"""End to end on real X-rays: a model trained on JPEGs labels the same pixels alike when a clinical system
exports them as 16-bit PNG or DICOM (8-bit, 12-bit MONOCHROME1 with a window, JPEG Baseline).

`medimage train` fits a small model on a deterministic subset of chestxray2017-224-train; other images,
and the 16 full-resolution ones, are written in each format and scored with `medimage evaluate`.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medimage.cli.main import main as cli
from tests.conftest import require_real_data
from tests.dicom_factory import clinical_copies

pytestmark = [pytest.mark.slow, pytest.mark.realdata, pytest.mark.xdist_group("e2e")]

PRESET = "chestxray2017-binary"
FOLDERS = ("NORMAL", "PNEUMONIA")
TRAIN_PER_FOLDER = 200
EVAL_PER_FOLDER = 150
FORMATS = ("png16", "dicom_mono2_8bit", "dicom_mono1_12bit_window", "dicom_jpeg_baseline")


def sorted_jpegs(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.jpeg"))


@pytest.fixture(scope="module")
def sources() -> dict[str, list[Path]]:
    """The real images: training subset and evaluation subset (disjoint), per folder."""
    train = require_real_data("chestxray2017-224-train")
    fullres = require_real_data("chestxray2017-val-fullres")
    picked: dict[str, list[Path]] = {}
    for folder in FOLDERS:
        names = sorted_jpegs(train / folder)
        picked[f"train/{folder}"] = names[:TRAIN_PER_FOLDER]
        picked[f"eval/{folder}"] = names[
            TRAIN_PER_FOLDER : TRAIN_PER_FOLDER + EVAL_PER_FOLDER
        ] + sorted_jpegs(fullres / folder)
    return picked


@pytest.fixture(scope="module")
def model(sources: dict[str, list[Path]], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3-epoch model on 400 JPEGs (symlinked, nothing copied), one TensorFlow thread for shared cores.
    Batch-norm statistics recomputed on clean images: after 30 steps the running averages are still far
    off, and the model labels every X-ray "pneumonia"."""
    root = tmp_path_factory.mktemp("clinical-model")
    for folder in FOLDERS:
        (root / "tree" / folder).mkdir(parents=True)
        for path in sources[f"train/{folder}"]:
            (root / "tree" / folder / path.name).symlink_to(path)
    out = root / "model"
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {
            "MEDIMAGE_TF_THREADS": "1",
            "OMP_NUM_THREADS": "1",
            "TF_CPP_MIN_LOG_LEVEL": "2",
        }.items():
            patch.setenv(name, value)
        code = cli(
            [
                "train",
                *("--data", str(root / "tree"), "--preset", PRESET, "--out", str(out)),
                *("--epochs", "3", "--quiet", "-H", "int8-calibration-images=50", "-H", "bn-recompute=true"),
            ]
        )
    assert code == 0, (out / "output" / "train.log").read_text()
    return out / "model.tflite"


@pytest.fixture(scope="module")
def trees(sources: dict[str, list[Path]], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """format -> a folder-per-label tree of the evaluation images in it (same names, the format's suffix)."""
    root = tmp_path_factory.mktemp("clinical-trees")
    for folder in FOLDERS:
        for name in ("jpeg", *FORMATS):
            (root / name / folder).mkdir(parents=True)
        for path in sources[f"eval/{folder}"]:
            data = path.read_bytes()
            (root / "jpeg" / folder / path.name).write_bytes(data)
            gray8 = np.asarray(Image.open(io.BytesIO(data)).convert("L"))
            for name, (suffix, copy) in clinical_copies(gray8).items():
                (root / name / folder / path.with_suffix(suffix).name).write_bytes(copy)
    return {name: root / name for name in ("jpeg", *FORMATS)}


def evaluate(model: Path, tree: Path, capsys: pytest.CaptureFixture[str]) -> dict:
    capsys.readouterr()
    code = cli(["evaluate", "--model", str(model), "--data", str(tree), "--preset", PRESET, "--split", "all"])
    out = capsys.readouterr().out
    assert code == 0, out
    return json.loads(out)


def test_every_clinical_format_scores_within_one_point_of_jpeg(
    model: Path, trees: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a model trained on JPEGs and the same evaluation X-rays in every export format
    # WHEN each tree is scored as served
    results = {name: evaluate(model, tree, capsys) for name, tree in trees.items()}
    # THEN every format was read whole and scores as the JPEGs do
    expected_n = 2 * EVAL_PER_FOLDER + 16
    assert {name: r["n"] for name, r in results.items()} == dict.fromkeys(trees, expected_n)
    reference = results["jpeg"]["accuracy"]
    assert reference > 0.6, results["jpeg"]  # a model that learned something, or the check says nothing
    gaps = {name: round(r["accuracy"] - reference, 4) for name, r in results.items()}
    assert all(abs(gap) <= 0.01 for gap in gaps.values()), gaps


def test_predict_prints_one_labelled_json_line_per_dicom_file(
    model: Path, trees: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN two DICOM exports, one 12-bit MONOCHROME1 with a window and one JPEG Baseline
    files = [
        sorted((trees["dicom_mono1_12bit_window"] / "NORMAL").glob("*.dcm"))[0],
        sorted((trees["dicom_jpeg_baseline"] / "PNEUMONIA").glob("*.dcm"))[0],
    ]
    capsys.readouterr()
    # WHEN `medimage predict` labels them
    code = cli(["predict", "--model", str(model), *map(str, files)])
    # THEN one JSON line each, naming the file and one of the model's labels
    lines = capsys.readouterr().out.splitlines()
    assert code == 0, lines
    assert len(lines) == 2
    for line, path in zip(lines, files, strict=True):
        answer = json.loads(line)
        assert answer["image"] == str(path)
        assert answer["label"] in {"normal", "pneumonia"}, answer
