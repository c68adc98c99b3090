"""`medimage predict`: classify image files with a local model, one JSON line per image.

It runs the serving path itself (validation, draft-mode decoding, the LiteRT interpreter), so what it
prints is what the API would answer for the same bytes: label, probabilities, confidence and whether a
clinician should review it (below the model's ``review.threshold``, or ``--review-threshold``).
``--heatmaps DIR`` also writes each image's class-activation overlay PNG, as ``?explain=true`` returns it.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from medimage.core.errors import RejectedInput
from medimage.inference.decode import decode_with_size
from medimage.inference.model import TFLiteClassifier

NAME = "predict"
HELP = "classify images with a local .tflite model (one JSON line per image)"
DESCRIPTION = (
    "Classify images with a local model; model.json and labels.txt must sit beside the .tflite.\n\n"
    "examples:\n  medimage predict --model out/model/model.tflite xray1.jpeg xray2.png\n"
    "  medimage predict --model out/model --review-threshold 0.9 --heatmaps maps/ xray1.jpeg"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="a .tflite file, or a model directory")
    parser.add_argument(
        "--review-threshold",
        type=float,
        metavar="P",
        help="confidence below which an answer needs review (default: model.json's review.threshold)",
    )
    parser.add_argument(
        "--heatmaps",
        type=Path,
        metavar="DIR",
        help="write <image name>.heatmap.png (the class-activation overlay) for each image here",
    )
    parser.add_argument("images", nargs="+", metavar="IMAGE")


def run(args: argparse.Namespace) -> int:
    threshold = args.review_threshold
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise ValueError(f"--review-threshold {threshold} is not a probability in [0, 1]")
    classifier = TFLiteClassifier.from_file(args.model, review_threshold=threshold)
    if args.heatmaps and not classifier.supports_explain:
        raise ValueError(f"{args.model} has no class-activation output: --heatmaps needs a model that has")
    version = str(classifier.meta.get("version") or classifier.sha256[:12])
    failed = 0
    for name in args.images:
        line: dict[str, object] = {"image": name}
        try:
            data = Path(name).read_bytes()
            start = time.perf_counter()
            array, size = decode_with_size(data, classifier.spec)
            prediction = classifier.classify_array(array, explain=bool(args.heatmaps))
            line.update(
                prediction.to_dict(),
                model_version=version,
                latency_ms=round((time.perf_counter() - start) * 1000, 3),
            )
            if args.heatmaps and prediction.heatmap is not None:
                line["heatmap_png"] = str(_write_heatmap(args.heatmaps, name, prediction.heatmap, size))
        except (RejectedInput, OSError) as exc:
            failed += 1
            code = exc.code if isinstance(exc, RejectedInput) else "unreadable_file"
            line["error"] = {"code": code, "message": str(exc)}
        print(json.dumps(line), flush=True)
    return 1 if failed else 0


def _write_heatmap(folder: Path, image: str, cam: np.ndarray, size: tuple[int, int]) -> Path:
    from medimage.inference.heatmap import render_heatmap

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{Path(image).name}.heatmap.png"
    path.write_bytes(render_heatmap(cam, size).png)
    return path
