"""`medimage audit`: before training, check that an image's shape does not give its label away."""

from __future__ import annotations

import argparse
import json
import sys

from PIL import Image

from medimage.cli.common import add_tree_arguments
from medimage.core.errors import MedimageError
from medimage.core.presets import get_preset
from medimage.core.shortcuts import audit_shapes

NAME = "audit"
HELP = "check a folder-per-label tree for shape shortcuts (aspect ratio or size telling the label)"
DESCRIPTION = (
    "Read the width and height of every image of a folder-per-label tree (headers only) and\n"
    "report, per class, how well aspect ratio and pixel count alone tell that class from the\n"
    "others (one-vs-rest AUC, 0.5 = no information). The same audit is in every manifest\n"
    "version's stats.json. Exit 0, or 3 when a shortcut is found.\n\n"
    "example:\n  medimage audit --data ../shared/data/chestxray2017-val-fullres "
    "--preset chestxray2017-binary"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_tree_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from medimage.training.runner import scan_tree

    preset = get_preset(args.preset)
    images = scan_tree(args.data, preset).images
    if not images:
        raise MedimageError(f"no labelled images under {args.data}")
    sizes = []
    for image in images:
        try:
            with Image.open(image.path) as opened:
                sizes.append(opened.size)
        except OSError as exc:
            raise MedimageError(f"{image.path}: cannot read the image header: {exc}") from None
    classes = list(preset.classes) if preset.classes else sorted({i.label for i in images})
    report = audit_shapes([i.label for i in images], [w for w, _ in sizes], [h for _, h in sizes], classes)
    print(json.dumps(report, indent=2))
    for warning in report["warnings"]:
        print(f"WARNING: {warning}", file=sys.stderr)
    return 3 if report["warnings"] else 0
