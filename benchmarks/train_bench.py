"""Benchmark: train with the default settings on the real ChestXRay2017 training images.

    python benchmarks/train_bench.py chestxray2017-binary [--data DIR] [--out DIR] [-H name=value ...]

Prints one JSON object: validation (and carved test) metrics, wall time, training time, peak memory of
the training process, model sizes, the calibration, and the validation accuracy under acquisition
shifts (``medimage.evaluation.shifts``: the same images as another site's scanner would make them).
The data folder comes from --data, $MEDIMAGE_TRAIN_DATA or
../shared/data/chestxray2017-224-train; where it is absent the benchmark prints a "skipped" JSON and
exits 0. The official ChestXRay2017 test split is not used here (it is kept for independent checks).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from medimage.core.presets import get_preset
from medimage.evaluation.shifts import robustness
from medimage.inference.model import TFLiteClassifier
from medimage.training.runner import run_train_script, scan_tree, write_channels

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MEDIMAGE_SHARED_DATA", REPO.parent / "shared" / "data"))
DEFAULT_DATA = SHARED / "chestxray2017-224-train"


def summary(metrics: dict[str, Any]) -> dict[str, Any]:
    return {
        "n": metrics["n"],
        "accuracy": metrics["accuracy"],
        "macro_auc": metrics["macro_auc"],
        "ece": metrics.get("ece"),
        "recall": {label: m["recall"] for label, m in metrics["per_class"].items()},
        "precision": {label: m["precision"] for label, m in metrics["per_class"].items()},
        "confusion_matrix": metrics["confusion_matrix"],
    }


def shift_summary(model_dir: Path, images: list[Any]) -> dict[str, Any]:
    """Validation accuracy clean, averaged over the acquisition shifts, and for each shift."""
    classifier = TFLiteClassifier.from_dir(model_dir)
    position = {label: k for k, label in enumerate(classifier.labels)}
    truth = [position[i.label] for i in images]
    report = robustness(classifier, [i.path.read_bytes() for i in images], truth)
    return {
        "clean_accuracy": report["clean"]["accuracy"],
        "shifted_mean_accuracy": round(report["shifted_mean_accuracy"], 4),
        "worst_shift": report["worst_shift"],
        "accuracy": {name: r["accuracy"] for name, r in report["shifts"].items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("preset", help="e.g. chestxray2017-binary or chestxray2017")
    parser.add_argument(
        "--data",
        type=Path,
        default=Path(os.environ.get("MEDIMAGE_TRAIN_DATA", DEFAULT_DATA)),
        help="folder-per-label tree (env MEDIMAGE_TRAIN_DATA)",
    )
    parser.add_argument("--out", type=Path, help="model directory to keep (default: a temporary one)")
    parser.add_argument("-H", "--hyperparameter", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--progress", action="store_true", help="relay the epoch lines on stderr")
    args = parser.parse_args(argv)
    if not args.data.is_dir():
        print(json.dumps({"benchmark": "train", "preset": args.preset, "skipped": f"{args.data} is absent"}))
        return 0
    preset = get_preset(args.preset)
    hyperparameters = {"preset": preset.name, "manifest-version": "benchmark"}
    for item in args.hyperparameter:
        name, _, value = item.partition("=")
        hyperparameters[name] = value
    out = args.out or Path(tempfile.mkdtemp(prefix="medimage-bench-"))
    started = time.monotonic()
    scan = scan_tree(args.data, preset)
    with tempfile.TemporaryDirectory(prefix="medimage-bench-channels-") as work:
        channels = write_channels(scan, Path(work))

        def relay(line: str) -> None:
            if args.progress and line.startswith(("epoch ", "data:", "training stopped", "final:")):
                print(line, file=sys.stderr, flush=True)

        run = run_train_script(
            channels,
            hyperparameters,
            out,
            out / "output",
            on_line=relay,
            log_path=out / "output" / "train.log",
        )
    wall = time.monotonic() - started
    # ru_maxrss of terminated children: the training subprocess (KiB on Linux).
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    result: dict[str, Any] = {
        "benchmark": "train",
        "preset": preset.name,
        "data": str(args.data),
        "images": {split: len(scan.split(split)) for split in ("train", "val", "test")},
        "hyperparameters": hyperparameters,
        "wall_seconds": round(wall, 1),
        "peak_rss_mb": round(peak_mb, 1),
        "ok": run.ok,
    }
    if not run.ok:
        result["failure"] = run.failure_reason
        print(json.dumps(result, indent=2))
        return 1
    meta = json.loads((out / "model.json").read_text())
    evaluation = json.loads((out / "evaluation.json").read_text())
    result.update(
        {
            "training_seconds": meta["training_seconds"],
            "epochs_run": sum(1 for line in run.log_tail if line.startswith("epoch ")),
            "parameters": meta["parameters"],
            "model_bytes": {
                "float": (out / "model.tflite").stat().st_size,
                "int8": (out / "model-int8.tflite").stat().st_size,
            },
            "export_checks": meta["export_checks"],
            "val": summary(evaluation["val"]),
            "carved_test": summary(evaluation["test"]),
            "calibration": meta.get("calibration"),
            "val_under_shifts": shift_summary(out, scan.split("val")),
            "model_dir": str(out),
        }
    )
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
