"""Benchmark: does a model label the same X-ray alike whatever format a clinical system exports it in?

    python benchmarks/format_bench.py --model build/model/model.tflite \
        --data ../shared/data/chestxray2017-224-train --preset chestxray2017-binary \
        [--split val] [--limit N] [--fullres ../shared/data/chestxray2017-val-fullres]

Takes the images of one split of --data as `medimage evaluate` would (the preset's patient-aware split),
decodes each JPEG once to 8-bit gray with Pillow and re-encodes those pixels as 16-bit PNG and as three
DICOM exports (``tests/dicom_factory.clinical_copies``). Then scores the original JPEG bytes and every
copy through the serving classifier, as `medimage evaluate` does. Prints one JSON object: accuracy and
macro AUC per format, the largest accuracy gap to JPEG in points, and the share of labels identical to
JPEG's; the same for every image of --fullres where given. The copies hold the JPEG's decoded pixels, so
a gap can only come from decoding: JPEG Baseline re-compression, or serving's JPEG draft mode (a large
JPEG decodes at reduced scale, PNG and DICOM at full resolution).
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from medimage.core.presets import SPLITS, get_preset
from medimage.evaluation.scoring import Classifier, Prediction, score
from medimage.inference.model import TFLiteClassifier
from medimage.training.runner import TreeImage, scan_tree

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from dicom_factory import clinical_copies  # noqa: E402


class RecordingClassifier:
    """Passes predictions through to ``score`` and keeps their labels, so formats can be compared
    image by image without scoring twice."""

    def __init__(self, inner: Classifier) -> None:
        self.inner = inner
        self.labels = list(inner.labels)
        self.predicted: list[str] = []

    def predict_bytes(self, data: bytes) -> Prediction:
        prediction = self.inner.predict_bytes(data)
        probs = prediction.probabilities
        self.predicted.append(max(self.labels, key=lambda label: probs[label]))
        return prediction


def spaced(images: list[TreeImage], limit: int | None) -> list[TreeImage]:
    """``limit`` images spread over the list: the scan is sorted by folder, so the first N would hold one
    label only (and no AUC)."""
    if limit is None or limit >= len(images):
        return images
    return [images[k * len(images) // limit] for k in range(limit)]


def format_contents(images: Sequence[TreeImage]) -> dict[str, list[bytes]]:
    """format -> the bytes of every image in it: the original JPEG first, then each clinical copy."""
    contents: dict[str, list[bytes]] = {"jpeg": []}
    for image in images:
        data = image.path.read_bytes()
        contents["jpeg"].append(data)
        gray8 = np.asarray(Image.open(io.BytesIO(data)).convert("L"))
        for name, (_suffix, copy) in clinical_copies(gray8).items():
            contents.setdefault(name, []).append(copy)
    return contents


def compare_formats(classifier: TFLiteClassifier, images: Sequence[TreeImage]) -> dict[str, Any]:
    started = time.monotonic()
    position = {label: k for k, label in enumerate(classifier.labels)}
    truth = [position[image.label] for image in images]
    formats: dict[str, dict[str, Any]] = {}
    labels: dict[str, list[str]] = {}
    for name, contents in format_contents(images).items():
        recording = RecordingClassifier(classifier)
        metrics = score(recording, contents, truth)
        formats[name] = {"accuracy": metrics["accuracy"], "macro_auc": metrics["macro_auc"]}
        labels[name] = recording.predicted
    reference = formats["jpeg"]["accuracy"]
    return {
        "n": len(images),
        "formats": formats,
        "max_accuracy_gap_points": round(
            100 * max(abs(f["accuracy"] - reference) for f in formats.values()), 2
        ),
        "agreement_with_jpeg": {
            name: round(float(np.mean(np.array(found) == np.array(labels["jpeg"]))), 4)
            for name, found in labels.items()
            if name != "jpeg"
        },
        "seconds": round(time.monotonic() - started, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", required=True, type=Path, help=".tflite file (model.json beside it)")
    parser.add_argument("--data", required=True, type=Path, help="folder-per-label tree of JPEGs")
    parser.add_argument("--preset", required=True)
    parser.add_argument("--split", choices=SPLITS, default="val")
    parser.add_argument("--limit", type=int, help="only N images, evenly spaced (every folder keeps some)")
    parser.add_argument("--fullres", type=Path, help="another tree, scored whole (every image)")
    args = parser.parse_args(argv)
    classifier = TFLiteClassifier.from_file(args.model)
    preset = get_preset(args.preset)
    images = spaced(scan_tree(args.data, preset).split(args.split), args.limit)
    result: dict[str, Any] = {"model": str(args.model), "data": str(args.data), "split": args.split}
    result |= compare_formats(classifier, images)
    if args.fullres is not None:
        full = spaced(scan_tree(args.fullres, preset).images, args.limit)
        result["fullres"] = {"data": str(args.fullres), "split": "all"} | compare_formats(classifier, full)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
