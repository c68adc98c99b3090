"""Benchmark: the Android model through the TFLite Task Library against the served model, image by image.

    python benchmarks/android_bench.py --model DIR [--fullres DIR] [--train DIR --sample 300] [--out DIR]

Exports ``DIR`` with ``medimage export android`` (the tflite-support environment must exist: ``make
tflite-install``), classifies each image with the Task Library's ``ImageClassifier`` (the file decoded and
resized by the Task Library, as the app's bitmap is) and with the serving classifier (``model.json``'s
served variant, LiteRT, the inference Lambda's decoding), and reports per image set: top-1 agreement,
score differences and each one's accuracy against the folder labels. Prints one JSON object; sets whose
folder is absent are "skipped". The validation split is the one `medimage train` held out of the
training tree (never trained on); the training sample is training data of the default models: agreement
there says the two paths answer alike, not how well the model generalises.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from medimage.android.package import classify_with_task_library, export_android
from medimage.core.presets import get_preset
from medimage.inference.model import TFLiteClassifier
from medimage.training.runner import scan_tree

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MEDIMAGE_SHARED_DATA", REPO.parent / "shared" / "data"))


def compare(android: Path, served: TFLiteClassifier, images: list[Any], description: str) -> dict[str, Any]:
    started = time.monotonic()
    answer = classify_with_task_library(android, [image.path for image in images])
    task_seconds = time.monotonic() - started
    labels = served.labels
    ours = np.array(
        [
            [{c["label"]: c["score"] for c in r["categories"]}[label] for label in labels]
            for r in answer["results"]
        ]
    )
    theirs = np.stack([_probs(served, image) for image in images])
    truth = np.array([labels.index(image.label) for image in images])
    diff = np.abs(ours - theirs)
    same = ours.argmax(1) == theirs.argmax(1)
    return {
        "images": description,
        "n": len(images),
        "top1_agreement": round(float(same.mean()), 4),
        "disagreements": int((~same).sum()),
        "max_abs_score_diff": round(float(diff.max()), 6),
        "mean_abs_score_diff": round(float(diff.mean()), 6),
        "accuracy_task_library": round(float((ours.argmax(1) == truth).mean()), 4),
        "accuracy_served": round(float((theirs.argmax(1) == truth).mean()), 4),
        "task_library_seconds": round(task_seconds, 1),
    }


def _probs(served: TFLiteClassifier, image: Any) -> np.ndarray:
    prediction = served.predict_bytes(image.path.read_bytes())
    return np.array([prediction.probabilities[label] for label in served.labels])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", required=True, type=Path, help="model directory (model.keras, model.json)")
    parser.add_argument("--preset", default="chestxray2017-binary", help="labels the image folders")
    parser.add_argument("--fullres", type=Path, default=SHARED / "chestxray2017-val-fullres")
    parser.add_argument("--train", type=Path, default=SHARED / "chestxray2017-224-train")
    parser.add_argument("--sample", type=int, default=300, help="training images drawn (seeded)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dataset", help="dataset name the model was trained under (default: the preset's)")
    parser.add_argument("--out", type=Path, default=REPO / "build" / "bench" / "android")
    args = parser.parse_args(argv)

    started = time.monotonic()
    exported = export_android(args.model, args.out)
    served = TFLiteClassifier.from_dir(args.model)
    preset = get_preset(args.preset)
    result: dict[str, Any] = {
        "model": str(args.model),
        "android_file": exported.path.name,
        "android_bytes": exported.path.stat().st_size,
        "served_file": served.meta.get("model_file"),
        "export_seconds": round(time.monotonic() - started, 1),
        "graph_check": exported.check,
        "sets": {},
    }
    if args.fullres.is_dir():
        images = scan_tree(args.fullres, preset).images
        result["sets"]["val_fullres"] = compare(
            exported.path,
            served,
            images,
            f"{args.fullres.name}: the official validation split, full resolution",
        )
    else:
        result["sets"]["val_fullres"] = {"skipped": f"{args.fullres} is absent"}
    if args.train.is_dir():
        # The validation split `medimage train` held out of this tree (patient-grouped, seeded by the dataset
        # name): images the model never trained on, decoded from the same 224 px JPEGs the app would get.
        held_out = scan_tree(args.train, preset, args.dataset).split("val")
        result["sets"]["validation"] = compare(
            exported.path,
            served,
            held_out,
            f"{args.train.name}: the {len(held_out)}-image validation split `medimage train` holds out "
            f"(dataset {args.dataset or preset.name}), never trained on",
        )
        pool = scan_tree(args.train, preset).images
        rng = np.random.default_rng(args.seed)
        chosen = [pool[i] for i in sorted(rng.choice(len(pool), min(args.sample, len(pool)), replace=False))]
        result["sets"]["train_sample"] = compare(
            exported.path,
            served,
            chosen,
            f"{args.train.name}: {len(chosen)} images drawn with seed {args.seed} (training data)",
        )
    else:
        result["sets"]["validation"] = {"skipped": f"{args.train} is absent"}
        result["sets"]["train_sample"] = {"skipped": f"{args.train} is absent"}
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
