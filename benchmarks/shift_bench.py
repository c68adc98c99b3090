"""Benchmark: robustness of trained models to acquisition shifts, side by side.

    python benchmarks/shift_bench.py --preset chestxray2017 --model DIR_A --model DIR_B \
        [--data DIR] [--split val] [--fullres DIR]

For each model directory (``model.tflite`` + ``model.json``), scores the preset's patient-grouped split
of --data clean and under every shift of ``medimage.evaluation.shifts`` (gamma, contrast, equalisation,
blur, sharpening, noise, JPEG, field of view, aspect ratio, rotation), through the serving classifier;
and, where --fullres is given, the official full-resolution validation X-rays. Prints one JSON object.
Where the data folder is absent it prints a "skipped" JSON and exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from medimage.core.presets import SPLITS, get_preset
from medimage.evaluation.shifts import robustness
from medimage.inference.model import TFLiteClassifier
from medimage.training.runner import scan_tree

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MEDIMAGE_SHARED_DATA", REPO.parent / "shared" / "data"))


def score_model(
    model_dir: Path, preset_name: str, data: Path, split: str, fullres: Path | None
) -> dict[str, Any]:
    classifier = TFLiteClassifier.from_dir(model_dir)
    preset = get_preset(preset_name)
    position = {label: k for k, label in enumerate(classifier.labels)}
    started = time.monotonic()
    images = scan_tree(data, preset).split(split)
    truth = [position[i.label] for i in images]
    report = robustness(classifier, [i.path.read_bytes() for i in images], truth)
    result: dict[str, Any] = {"model": str(model_dir), split: report}
    if fullres is not None and fullres.is_dir():
        full = scan_tree(fullres, preset).images
        full_report = robustness(
            classifier, [i.path.read_bytes() for i in full], [position[i.label] for i in full], []
        )
        result["fullres"] = full_report["clean"] | {"n": full_report["n"]}
    result["seconds"] = round(time.monotonic() - started, 1)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", required=True)
    parser.add_argument("--model", action="append", required=True, type=Path, help="model directory")
    parser.add_argument("--data", type=Path, default=SHARED / "chestxray2017-224-train")
    parser.add_argument("--split", choices=SPLITS, default="val")
    parser.add_argument("--fullres", type=Path, default=SHARED / "chestxray2017-val-fullres")
    args = parser.parse_args(argv)
    if not args.data.is_dir():
        print(json.dumps({"benchmark": "shift", "skipped": f"{args.data} is absent"}))
        return 0
    results = [score_model(m, args.preset, args.data, args.split, args.fullres) for m in args.model]
    table = {
        r["model"]: {
            "clean": r[args.split]["clean"]["accuracy"],
            "shifted_mean": round(r[args.split]["shifted_mean_accuracy"], 4),
            "worst": r[args.split]["worst_shift"],
            "fullres": r.get("fullres", {}).get("accuracy"),
        }
        for r in results
    }
    print(
        json.dumps(
            {
                "benchmark": "shift",
                "preset": args.preset,
                "split": args.split,
                "summary": table,
                "models": results,
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
