"""Run ``training/train.py`` as SageMaker would, locally.

Two reusable parts: ``scan_tree`` + ``write_channels`` turn a folder-per-label tree into the three
training channels exactly as a ManifestFile channel delivers them (a manifest CSV, and each image at
``<channel dir>/<key>``; symlinks, nothing copied); ``run_train_script`` runs the script in a
subprocess under the script-mode contract (``--name value`` hyperparameters, ``SM_CHANNEL_*``,
``SM_MODEL_DIR``, ``SM_OUTPUT_DATA_DIR``, ``SM_OUTPUT_DIR/failure``). ``medimage train`` and the local
Step Functions adapter both use them.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medimage.checkout import project_file
from medimage.core.errors import RejectedInput
from medimage.core.label_tree import scan_label_tree
from medimage.core.layout import LABELED_PREFIX, check_dataset_name
from medimage.core.manifests import CHANNEL_OF_SPLIT, CSV_FIELDS
from medimage.core.presets import SPLITS, Preset
from medimage.core.splits import assign_split, group_of
from medimage.training import parse_metrics
from medimage.training.data import TrainingInputError

TRAIN_SCRIPT_ENV = "MEDIMAGE_TRAIN_SCRIPT"


@dataclass(frozen=True)
class TreeImage:
    path: Path
    key: str
    label: str
    sha256: str
    patient_id: str | None
    split: str


@dataclass(frozen=True)
class TreeScan:
    images: list[TreeImage]
    skipped: list[tuple[Path, str]]  # files no label rule accepts, with the reason

    def split(self, name: str) -> list[TreeImage]:
        return [image for image in self.images if image.split == name]


def scan_tree(data_dir: Path, preset: Preset, dataset: str | None = None) -> TreeScan:
    """Label (``preset.label_for``) and split (patient-aware) every image ``scan_label_tree`` takes."""
    data_dir = Path(data_dir)
    tree = scan_label_tree(data_dir)
    dataset = check_dataset_name(dataset or preset.name)
    images: list[TreeImage] = []
    skipped: list[tuple[Path, str]] = []
    for folder, path in tree.files:
        try:
            label = preset.label_for(folder, path.name)
        except RejectedInput as exc:
            skipped.append((path, str(exc)))
            continue
        sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
        patient = preset.patient_id(path.name)
        split = assign_split(dataset, group_of(patient, sha256), preset.split_ratios)
        key = f"{LABELED_PREFIX}{dataset}/{path.relative_to(data_dir).as_posix()}"
        images.append(TreeImage(path.resolve(), key, label, sha256, patient, split))
    if not images:
        raise TrainingInputError(f"no labelled images found under {data_dir} for preset '{preset.name}'")
    return TreeScan(images, skipped)


def write_channel(channel_dir: Path, split: str, images: Iterable[TreeImage]) -> Path:
    """One channel as SageMaker delivers a ManifestFile channel: ``<split>.csv`` + images at their keys."""
    channel_dir.mkdir(parents=True, exist_ok=True)
    csv_path = channel_dir / f"{split}.csv"
    with csv_path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(CSV_FIELDS)
        for image in images:
            target = channel_dir / image.key
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.exists():
                target.symlink_to(image.path)
            writer.writerow((image.key, image.label, image.sha256, image.patient_id or ""))
    return channel_dir


def write_channels(scan: TreeScan, work_dir: Path) -> dict[str, Path]:
    """``{"train": dir, "validation": dir, "test": dir}``; an empty split is an error here, early."""
    channels: dict[str, Path] = {}
    for split in SPLITS:
        rows = scan.split(split)
        if not rows:
            raise TrainingInputError(
                f"the patient-aware split of {len(scan.images)} images left the '{split}' split empty; "
                "add more images (or patients)"
            )
        channel = CHANNEL_OF_SPLIT[split]
        channels[channel] = write_channel(Path(work_dir) / channel, split, rows)
    return channels


def default_train_script() -> Path:
    """``training/train.py`` of this checkout (or ``$MEDIMAGE_TRAIN_SCRIPT``)."""
    configured = os.environ.get(TRAIN_SCRIPT_ENV)
    script = Path(configured) if configured else project_file("training/train.py")
    if not script.is_file():
        raise FileNotFoundError(f"training script {script} not found; set {TRAIN_SCRIPT_ENV}")
    return script


@dataclass
class TrainingRun:
    returncode: int
    seconds: float
    metrics: dict[str, float]
    failure_reason: str | None
    log_tail: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def hyperparameter_args(hyperparameters: Mapping[str, Any]) -> list[str]:
    """``{"epochs": 3}`` -> ``["--epochs", "3"]``, as SageMaker passes them (every value a string)."""
    args: list[str] = []
    for name, value in hyperparameters.items():
        args += [f"--{name}", str(value)]
    return args


def run_train_script(
    channels: Mapping[str, Path],
    hyperparameters: Mapping[str, Any],
    model_dir: Path,
    output_data_dir: Path,
    on_line: Callable[[str], None] | None = None,
    timeout: float | None = None,
    script: Path | None = None,
    extra_env: Mapping[str, str] | None = None,
    log_path: Path | None = None,
) -> TrainingRun:
    """Run the training script in a subprocess under the SageMaker script-mode contract."""
    script = script or default_train_script()
    model_dir, output_data_dir = Path(model_dir), Path(output_data_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    output_data_dir.mkdir(parents=True, exist_ok=True)
    failure_dir = Path(tempfile.mkdtemp(prefix="medimage-sm-output-"))  # SageMaker's /opt/ml/output
    env = dict(os.environ)
    env.update({f"SM_CHANNEL_{name.upper()}": str(path) for name, path in channels.items()})
    env.update(
        {
            "SM_CHANNELS": json.dumps(sorted(channels)),
            "SM_HPS": json.dumps({k: str(v) for k, v in hyperparameters.items()}),
            "SM_MODEL_DIR": str(model_dir),
            "SM_OUTPUT_DATA_DIR": str(output_data_dir),
            "SM_OUTPUT_DIR": str(failure_dir),
            "SM_NUM_CPUS": str(os.cpu_count() or 1),
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra_env or {})
    command = [sys.executable, str(script), *hyperparameter_args(hyperparameters)]
    started = time.monotonic()
    tail: deque[str] = deque(maxlen=200)
    lines: list[str] = []
    log_file = log_path.open("w", encoding="utf-8") if log_path else None
    process = subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
        cwd=script.parent,
    )
    try:
        assert process.stdout is not None
        for raw in process.stdout:
            line = raw.rstrip("\n")
            tail.append(line)
            if "=" in line and ";" in line:
                lines.append(line)
            if log_file:
                log_file.write(raw)
            if on_line:
                on_line(line)
            if timeout is not None and time.monotonic() - started > timeout:
                process.kill()
                break
        returncode = process.wait()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if log_file:
            log_file.close()
    failure_file = failure_dir / "failure"
    failure = failure_file.read_text(encoding="utf-8").strip() if failure_file.exists() else None
    shutil.rmtree(failure_dir, ignore_errors=True)
    if returncode != 0 and not failure:
        failure = next((line for line in reversed(tail) if line.strip()), f"exit status {returncode}")
    return TrainingRun(returncode, time.monotonic() - started, parse_metrics(lines), failure, list(tail))
