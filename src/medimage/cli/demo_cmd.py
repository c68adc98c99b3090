"""`medimage demo`: run the whole pipeline locally on the in-process AWS emulation."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

EXAMPLES = """\
examples:
  medimage demo                                   # synthetic data, default preset, gate passes
  medimage demo --data DIR --min-accuracy 0.999   # the rejection path: nothing promoted, exit 0
  medimage demo --data ../shared/data/chestxray2017-224-train --preset chestxray2017-binary --epochs 5
  medimage demo --data OCT2017/train --preset oct2017 --workdir /tmp/oct-demo
"""


NAME = "demo"
HELP = "run the whole pipeline locally (no AWS account, no Docker)"
DESCRIPTION = (
    "Upload, annotate, split, train (real train.py), gate, promote, label held-back images "
    "and call the API, all on an in-process AWS emulation built from template.yaml.\n\n" + EXAMPLES
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, help="folder-per-label tree to upload (default: synthetic data)")
    parser.add_argument("--preset", default="chestxray2017", help="dataset preset (see `medimage presets`)")
    parser.add_argument("--dataset", help="dataset name in the bucket (default: the preset name)")
    parser.add_argument("--workdir", type=Path, default=Path("demo-output"), help="where results go")
    parser.add_argument(
        "--epochs",
        type=int,
        help="training epochs (TrainingEpochs; default: 4 on the synthetic images, the preset's on --data)",
    )
    parser.add_argument("--min-accuracy", type=float, help="gate threshold (default: the preset's)")
    parser.add_argument(
        "--holdout-share",
        type=float,
        default=0.1,
        help="share of each class held back from upload and labeled at the end (0 allowed)",
    )
    parser.add_argument("--per-class", type=int, default=60, help="synthetic images per class")
    parser.add_argument("--json", action="store_true", help="print summary.json at the end")


def run(args: argparse.Namespace) -> int:
    from medimage.local.demo import DemoOptions, run_demo

    summary = run_demo(
        DemoOptions(
            data=args.data,
            preset=args.preset,
            dataset=args.dataset,
            workdir=args.workdir,
            epochs=args.epochs,
            min_accuracy=args.min_accuracy,
            holdout_share=args.holdout_share,
            synthetic_per_class=args.per_class,
        )
    )
    if args.json:
        print(json.dumps(summary, indent=2))
    return 0
