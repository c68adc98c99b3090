"""`medimage export android`: a trained model as the TFLite file the Android app (Task Library / ML Model
Binding) loads, with its metadata and a README for the app."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from medimage.cli.common import model_directory
from medimage.core.errors import MedimageError

NAME = "export"
HELP = "export a trained model for another runtime (android: TFLite with metadata for the Task Library)"
DESCRIPTION = (
    "android: DIR/<name>.tflite, the model directory's trained network (model.keras) with an RGB input\n"
    "that becomes the model's gray input inside the graph, softmax probabilities out, and TFLite\n"
    "metadata (labels as TENSOR_AXIS_LABELS, normalisation mean 0 / std 1, image size, name, version,\n"
    "description, author, license) written by tflite-support; and DIR/README.md for the app.\n"
    "The metadata step runs in the tflite-support environment: `make tflite-install` makes\n"
    ".venv-tflite (or set MEDIMAGE_TFLITE_SUPPORT_PYTHON to a Python with tflite-support 0.4.4).\n\n"
    "example:\n"
    "  make tflite-install\n"
    "  medimage export android --model build/model --out build/android"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    targets = parser.add_subparsers(dest="target", metavar="TARGET", required=True)
    android = targets.add_parser(
        "android",
        help="TFLite with an RGB input and metadata, for the TFLite Task Library / ML Model Binding",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    android.add_argument(
        "--model",
        required=True,
        type=Path,
        help="model directory (with model.keras), or a file in it such as its model.tflite",
    )
    android.add_argument("--out", required=True, type=Path, help="folder for <name>.tflite and README.md")
    android.add_argument(
        "--name", help="file name without .tflite (default: the preset, e.g. chestxray2017_binary)"
    )
    android.add_argument("--author", default="medimage", help="metadata author (default: medimage)")
    android.add_argument(
        "--license", dest="license_text", help="metadata license text (default: the preset's data license)"
    )
    android.add_argument("--json", action="store_true", help="print the result as JSON")
    android.set_defaults(func=run_android)


def run_android(args: argparse.Namespace) -> int:
    from medimage.android.package import export_android

    try:
        result = export_android(
            model_directory(args.model), args.out, args.name, args.author, args.license_text
        )
    except MedimageError as exc:
        print(f"medimage export android: error [{exc.code}]: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(
            json.dumps({"path": str(result.path), "readme": str(args.out / "README.md"), **result.summary()})
        )
    else:
        print(f"wrote {result.path} (metadata by tflite-support {result.tflite_support})")
        print(f"wrote {args.out / 'README.md'}")
        print(f"graph check: {json.dumps(result.check)}")
    return 0
