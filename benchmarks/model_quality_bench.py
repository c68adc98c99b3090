"""Benchmark: how good the model is and how well it knows what it does not know, side by side.

    python benchmarks/model_quality_bench.py chestxray2017-binary [--data DIR] [--out DIR] [-H name=value ...]
    python benchmarks/model_quality_bench.py chestxray2017-binary --model DIR [--model DIR ...]

Trains with the preset's defaults (and any -H overrides), or takes trained model directories, and prints
one JSON object with, for each model, as served (int8 or float, its own review and novelty thresholds):

- ``clean``: the carved test split (patient-aware, never trained or tuned on): accuracy, per-class recall,
  macro AUC, the share labeled automatically, the accuracy of those labels, the errors sent to review;
- ``fullres``: the same for the 16 full-resolution validation X-rays;
- ``shifted_mean`` and ``shifted``: the carved test split under the 14 acquisition shifts;
- ``made_from_images``: inverted, corner-cropped and badly windowed X-rays: the share labeled;
- ``foreign``: the OCT scans, the scikit-image pictures and rendered documents: the share labeled (0 is
  the target) and as what kind of review.

The data come from ../shared/data (or $MEDIMAGE_SHARED_DATA); where the training folder is absent the
benchmark prints a "skipped" JSON and exits 0. The official ChestXRay2017 test split is not used here.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from medimage.core.label_tree import image_files
from medimage.core.presets import get_preset
from medimage.evaluation.ood import rendered_pages, routing, side_by_side
from medimage.evaluation.scoring import scored
from medimage.evaluation.shifts import SHIFTS
from medimage.inference.model import TFLiteClassifier
from medimage.training.runner import run_train_script, scan_tree, write_channels

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MEDIMAGE_SHARED_DATA", REPO.parent / "shared" / "data"))


def skimage_pictures() -> list[bytes]:
    """The pictures the scikit-image wheel ships (photographs, text, microscopy, a retina, a phantom)."""
    try:
        import skimage
    except ImportError:
        return []
    folder = Path(skimage.__file__).parent / "data"
    return [path.read_bytes() for path in sorted(folder.iterdir()) if path.suffix.lower() in (".png", ".jpg")]


def labelled_set(classifier: TFLiteClassifier, files: list[bytes], truth: list[int]) -> dict[str, Any]:
    from medimage.core.metrics import evaluate

    result = scored(classifier, files)
    metrics = evaluate(truth, result.probabilities, classifier.labels)
    return {
        "accuracy": metrics["accuracy"],
        "macro_auc": metrics["macro_auc"],
        "recall": {label: m["recall"] for label, m in metrics["per_class"].items()},
        **routing(result.reasons, list(result.probabilities.argmax(axis=1)), truth),
    }


def report(model_dir: Path, preset_name: str, data: Path) -> dict[str, Any]:
    classifier = TFLiteClassifier.from_dir(model_dir)
    meta = json.loads((model_dir / "model.json").read_text())
    preset = get_preset(preset_name)
    position = {label: k for k, label in enumerate(classifier.labels)}
    test = scan_tree(data, preset).split("test")
    files = [image.path.read_bytes() for image in test]
    truth = [position[image.label] for image in test]
    foreign: dict[str, list[bytes]] = {}
    if (SHARED / "oct2017-val-32").is_dir():
        foreign["oct"] = [path.read_bytes() for path in image_files(SHARED / "oct2017-val-32")]
    pictures = skimage_pictures()
    if pictures:
        foreign["skimage"] = pictures
    foreign["rendered_pages"] = rendered_pages(20)
    started = time.monotonic()
    result: dict[str, Any] = {
        "model_dir": str(model_dir),
        "architecture": meta.get("architecture"),
        "served": meta.get("model_file"),
        "training_seconds": meta.get("training_seconds"),
        "review_threshold": classifier.review_threshold,
        "class_thresholds": None
        if classifier.class_thresholds is None
        else dict(zip(classifier.labels, classifier.class_thresholds, strict=True)),
        "novelty": {k: meta["novelty"][k] for k in ("unusual_threshold", "foreign_threshold")}
        if meta.get("novelty")
        else None,
        "clean": labelled_set(classifier, files, truth),
    }
    fullres = SHARED / "chestxray2017-val-fullres"
    if fullres.is_dir():
        scan = scan_tree(fullres, preset)
        result["fullres"] = labelled_set(
            classifier, [i.path.read_bytes() for i in scan.images], [position[i.label] for i in scan.images]
        )
    routed = side_by_side(classifier, files, truth, SHIFTS, foreign)
    result.update({key: routed[key] for key in ("shifted_mean", "shifted", "made_from_images", "foreign")})
    result["seconds"] = round(time.monotonic() - started, 1)
    return result


def train(preset_name: str, data: Path, out: Path, overrides: list[str]) -> Path:
    hyperparameters = {"preset": preset_name, "manifest-version": "benchmark"}
    for item in overrides:
        name, _, value = item.partition("=")
        hyperparameters[name] = value
    with tempfile.TemporaryDirectory(prefix="medimage-quality-channels-") as work:
        channels = write_channels(scan_tree(data, get_preset(preset_name)), Path(work))
        run = run_train_script(
            channels, hyperparameters, out, out / "output", log_path=out / "output" / "train.log"
        )
    if not run.ok:
        raise SystemExit(f"training failed: {run.failure_reason}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("preset", help="e.g. chestxray2017-binary or chestxray2017")
    parser.add_argument("--data", type=Path, default=SHARED / "chestxray2017-224-train")
    parser.add_argument("--model", type=Path, action="append", default=[], help="a trained model directory")
    parser.add_argument("--out", type=Path, help="where to train (default: a temporary folder)")
    parser.add_argument("-H", "--hyperparameter", action="append", default=[], metavar="NAME=VALUE")
    args = parser.parse_args(argv)
    if not args.data.is_dir():
        print(json.dumps({"benchmark": "model_quality", "skipped": f"{args.data} is absent"}))
        return 0
    models = list(args.model)
    if not models:
        started = time.monotonic()
        out = args.out or Path(tempfile.mkdtemp(prefix="medimage-quality-"))
        models = [train(args.preset, args.data, out, args.hyperparameter)]
        print(f"trained in {time.monotonic() - started:.0f}s", file=sys.stderr)
    result = {
        "benchmark": "model_quality",
        "preset": args.preset,
        "models": [report(model, args.preset, args.data) for model in models],
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
