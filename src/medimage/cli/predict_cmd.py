"""`medimage predict`: classify image files with a local model, one JSON line per image.

It runs the serving path itself (validation, draft-mode decoding, the LiteRT interpreter), so what it
prints is what the API would answer for the same bytes.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from medimage.core.errors import RejectedInput
from medimage.inference.decode import decode_image
from medimage.inference.model import TFLiteClassifier

NAME = "predict"
HELP = "classify images with a local .tflite model (one JSON line per image)"
DESCRIPTION = (
    "Classify images with a local model; model.json and labels.txt must sit beside the .tflite.\n\n"
    "example:\n  medimage predict --model out/model/model.tflite xray1.jpeg xray2.png"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="a .tflite file, or a model directory")
    parser.add_argument("images", nargs="+", metavar="IMAGE")


def run(args: argparse.Namespace) -> int:
    classifier = TFLiteClassifier.from_file(args.model)
    version = str(classifier.meta.get("version") or classifier.sha256[:12])
    failed = 0
    for name in args.images:
        line: dict[str, object] = {"image": name}
        try:
            data = Path(name).read_bytes()
            start = time.perf_counter()
            probs = classifier.predict_array(decode_image(data, classifier.spec))
            prediction = classifier.to_prediction(probs)
            line.update(
                prediction.to_dict(),
                model_version=version,
                latency_ms=round((time.perf_counter() - start) * 1000, 3),
            )
        except (RejectedInput, OSError) as exc:
            failed += 1
            code = exc.code if isinstance(exc, RejectedInput) else "unreadable_file"
            line["error"] = {"code": code, "message": str(exc)}
        print(json.dumps(line), flush=True)
    return 1 if failed else 0
