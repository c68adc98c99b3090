"""`medimage train`: train on a folder-per-label tree by running training/train.py as SageMaker would."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

from medimage.cli.common import add_tree_arguments
from medimage.core.errors import MedimageError
from medimage.core.presets import get_preset

PROGRESS_PREFIXES = (
    "data:",
    "model:",
    "epoch ",
    "training stopped",
    "export:",
    "final:",
    "train.py: error",
    "ignoring hyperparameters",
)


NAME = "train"
HELP = "train a classifier on a folder-per-label tree (runs training/train.py locally)"
DESCRIPTION = (
    "Label and split a folder-per-label tree with a preset (patient-aware), lay it out as the\n"
    "SageMaker training channels and run training/train.py under the script-mode contract.\n"
    "--out receives model.tflite, model-int8.tflite, labels.txt, model.json, evaluation.json\n"
    "and output/ (plots, evaluation, train.log).\n\n"
    "example:\n  medimage train --data ../shared/data/chestxray2017-224-train \\\n"
    "      --preset chestxray2017-binary --out build/model --epochs 20"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_tree_arguments(parser)
    parser.add_argument("--out", required=True, type=Path, help="model directory to write")
    parser.add_argument("--epochs", type=int, help="maximum epochs (early stopping may end sooner)")
    parser.add_argument("--image-size", type=int, help="input size in pixels (default: the preset's)")
    parser.add_argument("--dataset", help="dataset name (default: the preset name); it seeds the split")
    parser.add_argument(
        "--hyperparameter",
        "-H",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="any other train.py hyperparameter, e.g. -H batch-size=64 (repeatable)",
    )
    parser.add_argument("--quiet", action="store_true", help="do not relay the training progress")


def run(args: argparse.Namespace) -> int:
    from medimage.training.runner import run_train_script, scan_tree, write_channels

    preset = get_preset(args.preset)
    scan = scan_tree(args.data, preset, args.dataset)
    if scan.skipped:
        print(
            f"skipped {len(scan.skipped)} file(s) no label rule accepts, e.g. {scan.skipped[0][0]}: "
            f"{scan.skipped[0][1]}",
            file=sys.stderr,
        )
    hyperparameters: dict[str, str] = {
        "preset": preset.name,
        "dataset": args.dataset or preset.name,
        "manifest-version": "local",
    }
    if args.epochs is not None:
        hyperparameters["epochs"] = str(args.epochs)
    if args.image_size is not None:
        hyperparameters["image-size"] = str(args.image_size)
    for item in args.hyperparameter:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ValueError(f"--hyperparameter expects NAME=VALUE, got '{item}'")
        hyperparameters[name.lstrip("-")] = value
    out = Path(args.out)
    output_dir = out / "output"

    def relay(line: str) -> None:
        if not args.quiet and line.startswith(PROGRESS_PREFIXES):
            print(line, flush=True)

    work = Path(tempfile.mkdtemp(prefix="medimage-train-"))
    try:
        channels = write_channels(scan, work)
        counts = {name: len(scan.split(name)) for name in ("train", "val", "test")}
        print(
            f"training on {len(scan.images)} images {counts} from {args.data} (preset {preset.name})",
            flush=True,
        )
        result = run_train_script(
            channels, hyperparameters, out, output_dir, on_line=relay, log_path=output_dir / "train.log"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if not result.ok:
        raise MedimageError(f"training failed: {result.failure_reason} (log: {output_dir / 'train.log'})")
    evaluation = json.loads((out / "evaluation.json").read_text(encoding="utf-8"))
    print(
        f"done in {result.seconds:.0f}s: val accuracy {evaluation['val']['accuracy']}, "
        f"test accuracy {evaluation['test']['accuracy']}, test macro AUC {evaluation['test']['macro_auc']}"
    )
    print(f"model: {out / 'model.tflite'} ({(out / 'model.tflite').stat().st_size} bytes)")
    return 0
