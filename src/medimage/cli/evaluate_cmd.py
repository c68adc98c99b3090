"""`medimage evaluate`: score a .tflite model on a folder-per-label tree, the way the Lambda serves it."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from medimage.cli.common import add_tree_arguments
from medimage.core.errors import MedimageError, RejectedInput
from medimage.core.presets import SPLITS, get_preset
from medimage.evaluation.shifts import SHIFT_NAMES

NAME = "evaluate"
HELP = "score a .tflite model on a folder-per-label tree, exactly as served"
DESCRIPTION = (
    "Score a model (a .tflite file with its model.json beside it) on a folder-per-label tree,\n"
    "through the serving classifier: the preprocessing and LiteRT interpreter of the inference\n"
    "Lambda. Prints one split of evaluation.json (accuracy, per-class precision/recall/F1,\n"
    "macro AUC, confusion matrix, n) and, at the model's review threshold, the selective figures:\n"
    "the share labelled without review (coverage), the accuracy on it, and the coverage-accuracy\n"
    "curve. With --out, the confusion matrix and that curve are also drawn as PNGs beside it.\n\n"
    "With --report, the routing side by side instead: the images clean, under every acquisition\n"
    "shift, changed into bad images of their kind (inverted, a corner, blown windowing), and the\n"
    "foreign sets (--ood folders, and rendered documents and screenshots): for each, the share\n"
    "labeled automatically, the accuracy of those labels, the errors sent to review, and why.\n\n"
    "example:\n  medimage evaluate --model build/model/model.tflite \\\n"
    "      --data ../shared/data/chestxray2017-val-fullres --preset chestxray2017-binary"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, type=Path, help=".tflite file (model.json beside it)")
    add_tree_arguments(parser)
    parser.add_argument(
        "--split",
        choices=("all", *SPLITS),
        default="all",
        help="score only the images the preset's patient-aware split puts in this split",
    )
    parser.add_argument("--dataset", help="dataset name used to split (default: the preset name)")
    parser.add_argument(
        "--shifts",
        nargs="?",
        const="all",
        metavar="NAMES",
        help=(
            "instead, a robustness report: the same images changed as another site's acquisition "
            "would change them (gamma, contrast, blur, noise, compression, framing...), scored as "
            "served; 'all' (the default when given without a value) or a comma-separated list of: "
            + ", ".join(SHIFT_NAMES)
        ),
    )
    parser.add_argument(
        "--report",
        action="store_true",
        help="instead, the routing report: clean, shifted, made and foreign sets side by side",
    )
    parser.add_argument(
        "--ood",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="a folder of images that are not of the model's kind, for --report (repeatable)",
    )
    parser.add_argument(
        "--pages",
        type=int,
        default=20,
        help="rendered documents and screenshots in --report's foreign sets (default 20; 0: none)",
    )
    parser.add_argument(
        "--review-threshold",
        type=float,
        help="confidence below which a prediction goes to review (default: the model's, from model.json)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="also write the JSON to this file, and <stem>-confusion_matrix.png and "
        "<stem>-coverage_accuracy.png beside it",
    )


def run(args: argparse.Namespace) -> int:
    from medimage.inference.model import TFLiteClassifier
    from medimage.training.runner import scan_tree

    classifier = TFLiteClassifier.from_file(args.model)
    if args.review_threshold is not None and not 0.0 <= args.review_threshold <= 1.0:
        raise MedimageError(f"--review-threshold {args.review_threshold} is not a probability in [0, 1]")
    threshold = classifier.review_policy if args.review_threshold is None else args.review_threshold
    scan = scan_tree(args.data, get_preset(args.preset), args.dataset)
    images = scan.images if args.split == "all" else scan.split(args.split)
    if not images:
        raise MedimageError(f"no images of split '{args.split}' under {args.data}")
    unknown = sorted({i.label for i in images} - set(classifier.labels))
    if unknown:
        raise MedimageError(f"labels {unknown} are not among the model's labels {classifier.labels}")
    position = {label: k for k, label in enumerate(classifier.labels)}
    truth = [position[i.label] for i in images]
    if args.report:
        metrics = _report(args, classifier, [i.path.read_bytes() for i in images], truth)
    elif args.shifts:
        from medimage.evaluation.shifts import get_shifts, robustness

        try:
            shifts = get_shifts(None if args.shifts == "all" else args.shifts.split(","))
        except ValueError as exc:
            raise MedimageError(str(exc)) from None
        try:
            files = [i.path.read_bytes() for i in images]
            metrics = robustness(classifier, files, truth, shifts, threshold=threshold)
        except RejectedInput as exc:
            raise MedimageError(f"an image of {args.data} cannot be scored: {exc}") from None
    else:
        from medimage.evaluation.scoring import score

        try:
            metrics = score(
                classifier,
                (i.path.read_bytes() for i in images),
                truth,
                threshold=threshold,
            )
        except RejectedInput as exc:
            raise MedimageError(f"an image of {args.data} cannot be scored: {exc}") from None
    text = json.dumps(metrics, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")
        if not args.shifts and not args.report:
            _plot(metrics, args.split, args.out)
    if scan.skipped:
        print(f"skipped {len(scan.skipped)} file(s) no label rule accepts", file=sys.stderr)
    return 0


def _report(
    args: argparse.Namespace, classifier: Any, files: list[bytes], truth: list[int]
) -> dict[str, Any]:
    from medimage.core.label_tree import image_files
    from medimage.evaluation.ood import rendered_pages, side_by_side
    from medimage.evaluation.shifts import get_shifts

    foreign: dict[str, list[bytes]] = {}
    for entry in args.ood:
        name, _, folder = entry.partition("=")
        if not name or not folder or not Path(folder).is_dir():
            raise MedimageError(f"--ood {entry!r}: expected NAME=DIR with an existing folder")
        foreign[name] = [path.read_bytes() for path in image_files(Path(folder))]
        if not foreign[name]:
            raise MedimageError(f"--ood {entry!r}: no images in {folder}")
    if args.pages < 0:
        raise MedimageError("--pages must be at least 0")
    if args.pages:
        foreign["rendered_pages"] = rendered_pages(args.pages)
    shifts = get_shifts(None if args.shifts in (None, "all") else args.shifts.split(","))
    policy = classifier.review_policy
    thresholds = (
        {"review_thresholds": dict(zip(classifier.labels, policy, strict=True))}
        if isinstance(policy, list)
        else {"review_threshold": policy}
    )
    try:
        return {**thresholds, **side_by_side(classifier, files, truth, shifts, foreign)}
    except RejectedInput as exc:
        raise MedimageError(f"an image cannot be scored: {exc}") from None


def _plot(metrics: dict[str, Any], split: str, out: Path) -> None:
    from medimage.training import plots

    named = {split: metrics}
    plots.confusion_matrices(named, out.with_name(f"{out.stem}-confusion_matrix.png"))
    plots.coverage_accuracy(named, out.with_name(f"{out.stem}-coverage_accuracy.png"))
