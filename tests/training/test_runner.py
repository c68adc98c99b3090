"""The reusable runner parts: tree -> channels, hyperparameters -> arguments, log -> metrics."""

from __future__ import annotations

import csv
import re
from collections.abc import Callable
from pathlib import Path

from medimage.core.presets import get_preset
from medimage.training import METRIC_DEFINITIONS, format_metrics, parse_metrics
from medimage.training.runner import hyperparameter_args, scan_tree, write_channels


def test_tree_becomes_manifest_channels_with_symlinked_images(
    tmp_path: Path, tree_maker: Callable[..., Path]
) -> None:
    tree = tree_maker(tmp_path / "tree", per_class=10, size=16)
    scan = scan_tree(tree, get_preset("folders"))
    channels = write_channels(scan, tmp_path / "channels")
    assert set(channels) == {"train", "validation", "test"}
    total = 0
    for name, split in (("train", "train"), ("validation", "val"), ("test", "test")):
        with (channels[name] / f"{split}.csv").open() as handle:
            rows = list(csv.DictReader(handle))
        assert rows and list(rows[0]) == ["key", "label", "sha256", "patient_id"]
        for row in rows:
            assert row["key"].startswith(f"incoming/labeled/folders/{row['label']}/")
            assert (channels[name] / row["key"]).is_symlink()
        total += len(rows)
    assert total == 30


def test_preset_rules_label_and_group_patients(tmp_path: Path, tree_maker: Callable[..., Path]) -> None:
    # GIVEN chest X-ray names: two images of one patient, and a file no rule accepts
    tree = tree_maker(tmp_path / "tree", per_class=3, size=16, labels=("PNEUMONIA",))
    (tree / "PNEUMONIA" / "PNEUMONIA_0.png").rename(tree / "PNEUMONIA" / "person7_virus_1.png")
    (tree / "PNEUMONIA" / "PNEUMONIA_1.png").rename(tree / "PNEUMONIA" / "person7_bacteria_2.png")
    (tree / "OTHER").mkdir()
    (tree / "PNEUMONIA" / "PNEUMONIA_2.png").rename(tree / "OTHER" / "x.png")
    scan = scan_tree(tree, get_preset("chestxray2017"))
    assert sorted(i.label for i in scan.images) == ["bacterial", "viral"]
    assert {i.patient_id for i in scan.images} == {"person7"}
    assert len({i.split for i in scan.images}) == 1  # one patient never straddles two splits
    assert [p.name for p, _ in scan.skipped] == ["x.png"]


def test_hyperparameters_are_passed_as_sagemaker_does() -> None:
    assert hyperparameter_args({"epochs": 3, "preset": "folders"}) == ["--epochs", "3", "--preset", "folders"]


def test_metric_regexes_tell_accuracy_from_val_accuracy() -> None:
    values = {"loss": 0.5, "accuracy": 0.75, "val_loss": 0.25, "val_accuracy": 0.9}
    line = format_metrics("epoch 2/5:", values)
    assert line == "epoch 2/5: loss=0.5; accuracy=0.75; val_loss=0.25; val_accuracy=0.9;"
    assert parse_metrics([line, "final: test_accuracy=0.8; test_macro_auc=1e-05;"]) == {
        "train:loss": 0.5,
        "train:accuracy": 0.75,
        "validation:loss": 0.25,
        "validation:accuracy": 0.9,
        "test:accuracy": 0.8,
        "test:macro_auc": 1e-05,
    }
    for definition in METRIC_DEFINITIONS:  # SageMaker's limits: name <= 255, regex <= 500 chars
        assert len(definition["Name"]) <= 255 and len(definition["Regex"]) <= 500
        re.compile(definition["Regex"])


def test_a_tree_of_dicom_files_becomes_channels_the_trainer_reads(tmp_path: Path) -> None:
    """`medimage train --data` takes .dcm trees as it takes JPEGs: scanned, laid out, decoded."""
    import sys

    import numpy as np

    from medimage.core.preprocess import PreprocessSpec
    from medimage.training.data import load_channel

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from dicom_factory import make_dicom

    rng = np.random.default_rng(0)
    for label in ("bars", "disk"):
        (tmp_path / "tree" / label).mkdir(parents=True)
        # 50 a class: each file's content hash (its UIDs are random) picks its split, so no split stays empty
        for i in range(50):
            pixels = rng.integers(0, 4096, (24, 24), dtype=np.uint16)
            (tmp_path / "tree" / label / f"{label}_{i}.dcm").write_bytes(make_dicom(pixels, bits_stored=12))
    scan = scan_tree(tmp_path / "tree", get_preset("folders"))
    assert len(scan.images) == 100 and all(i.path.suffix == ".dcm" for i in scan.images)
    channels = write_channels(scan, tmp_path / "channels")
    spec = PreprocessSpec(image_size=16, channels=1)
    loaded = load_channel("train", channels["train"], spec)
    assert loaded.x.shape[1:] == (16, 16, 1) and loaded.x.std() > 0  # real pixels, not a blank
