"""`medimage audit`: a tree whose classes differ in shape gets a warning and exit 3; a fair one exit 0."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from medimage.cli.main import main as cli


def _tree(root: Path, sizes: dict[str, tuple[int, int]]) -> Path:
    for label, (width, height) in sizes.items():
        (root / label).mkdir(parents=True)
        for i in range(6):
            Image.new("L", (width + i, height), color=100 + i).save(root / label / f"{label}_{i}.png")
    return root


def test_classes_told_apart_by_aspect_ratio_are_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN wide 'pneumonia' images and squarer 'normal' ones
    tree = _tree(tmp_path / "tree", {"NORMAL": (120, 100), "PNEUMONIA": (150, 100)})
    # WHEN audited
    code = cli(["audit", "--data", str(tree), "--preset", "chestxray2017-binary"])
    out = capsys.readouterr()
    # THEN the aspect ratio is named as a shortcut, on stderr and in the JSON, and the exit code says so
    assert code == 3
    report = json.loads(out.out)
    assert report["aspect_ratio"]["pneumonia"]["auc"] == 1.0
    assert "aspect_ratio alone tells 'normal' from the rest" in out.err


def test_a_tree_with_one_shape_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tree = _tree(tmp_path / "tree", {"NORMAL": (128, 128), "PNEUMONIA": (128, 128)})
    assert cli(["audit", "--data", str(tree), "--preset", "chestxray2017-binary"]) == 0
    assert json.loads(capsys.readouterr().out)["warnings"] == []
