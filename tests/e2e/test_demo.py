"""End to end: `medimage demo` on a tiny synthetic set, the pass path and the rejection path."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medimage.local.demo import DemoOptions, Reporter, run_demo

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("e2e")]


def test_demo_trains_promotes_labels_and_serves(tmp_path):
    # GIVEN the demo's small synthetic dataset (3 classes x 60 images of 96 px, 4 bad files)
    lines: list[str] = []
    # WHEN the whole pipeline runs with the demo's defaults
    summary = run_demo(DemoOptions(workdir=tmp_path, holdout_share=0.2), Reporter(lines.append))
    # THEN the workflow succeeded, the gate passed and the promoted model labels the held-back images
    assert summary["execution_status"] == "SUCCEEDED"
    assert summary["gate"]["passed"] is True, summary["gate"]
    assert summary["model_version"]
    images = summary["images"]
    assert images["quarantined"] == 4
    assert images["duplicates"] == 1
    assert images["uploaded"] == images["accepted"] + images["duplicates"] + images["quarantined"]
    assert images["held_back"] == 3 * 12
    assert summary["predictions"]["count"] == images["held_back"]
    assert summary["predictions"]["accuracy_on_held_back"] >= 0.5
    assert summary["api"]["status_code"] == 200
    assert summary["api"]["response"]["model_version"] == summary["model_version"]
    assert set(summary["timings_s"]) >= {
        "upload_and_annotate",
        "split",
        "training_workflow",
        "drop_to_label",
        "api",
        "total",
    }
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk["model_version"] == summary["model_version"]
    assert (tmp_path / "model" / "model.tflite").is_file()
    assert (tmp_path / "evaluation" / "confusion_matrix.png").is_file()
    assert (tmp_path / "evaluation" / "coverage_accuracy.png").is_file()
    assert (tmp_path / "predictions" / "prediction_output.txt").read_text().count("\n") == images["held_back"]
    assert any("Where to look" in line for line in lines)


def noise_tree(root: Path, per_class: int = 24) -> Path:
    """ChestXRay2017's layout with noise for pixels: labels no network can learn, so no model reaches the
    gate's accuracy (a pretrained network labels the demo's synthetic images perfectly)."""
    rng = np.random.default_rng(3)
    names = {
        "NORMAL": [f"IM-{1000 + i:04d}-0001.jpeg" for i in range(per_class)],
        "PNEUMONIA": [f"person{100 + i}_bacteria_{i}.jpeg" for i in range(per_class)]
        + [f"person{200 + i}_virus_{i}.jpeg" for i in range(per_class)],
    }
    for folder, files in names.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        for name in files:
            Image.fromarray(rng.integers(0, 255, (64, 64), dtype=np.uint8), "L").save(root / folder / name)
    return root


def test_demo_rejection_path_promotes_nothing_and_exits_zero(tmp_path):
    # GIVEN images whose labels cannot be learned and a high accuracy threshold, WHEN the demo runs through
    # the real CLI
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "medimage.cli.main",
            "demo",
            "--data",
            str(noise_tree(tmp_path / "tree")),
            "--workdir",
            str(tmp_path / "out"),
            "--epochs",
            "1",
            "--min-accuracy",
            "0.999",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    # THEN it exits 0, the gate says why, and nothing was promoted or labeled
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["execution_status"] == "SUCCEEDED"
    assert summary["gate"]["passed"] is False
    assert any("min_accuracy 0.9990" in reason for reason in summary["gate"]["reasons"])
    assert summary["model_version"] is None
    assert summary["predictions"]["count"] == 0
    assert summary["api"]["status_code"] == 503
    assert "REJECTED" in proc.stdout
