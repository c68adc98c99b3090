"""`medimage review list|show|label`: the predictions routed to a clinician, and the clinician's verdict."""

from __future__ import annotations

import argparse
import getpass
import json
import os
from typing import TYPE_CHECKING

from medimage.cli.common import add_endpoint_arguments, apply_endpoint_arguments
from medimage.ops.stack import BUCKET_ENV

if TYPE_CHECKING:
    from medimage.inference.review import ReviewQueue

REVIEWER_ENV = "MEDIMAGE_REVIEWER"
NAME = "review"
HELP = "list, show and label the images waiting for a clinician (review/<dataset>/)"
DESCRIPTION = (
    "The review queue in the data bucket: drop-to-label stores each prediction below the review\n"
    "threshold at review/<dataset>/<file> with its result JSON. `label` moves an image into\n"
    "incoming/labeled/<dataset>/ under a folder and file name the dataset's preset reads as LABEL, so\n"
    "it becomes training data (the next _commit trains on it), then clears it from review/. The verdict\n"
    "and the reviewer are noted in the prediction result and, for a DICOM, in an SR of their own.\n\n"
    "examples:\n"
    "  medimage review list --dataset chestxray2017 --bucket my-data-bucket\n"
    "  medimage review show person1_virus_6.jpeg --dataset chestxray2017\n"
    "  medimage review label person1_virus_6.jpeg bacterial --dataset chestxray2017\n"
    "  medimage review list --dataset chestxray2017 --stack-json up-output/stack.json   # `medimage up`"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    for name, text in (
        ("list", "the images waiting for review, least confident first"),
        ("show", "the prediction of one image waiting for review"),
        ("label", "give one image its label: it moves into incoming/labeled/ as training data"),
    ):
        action = actions.add_parser(name, help=text, description=text)
        if name in ("show", "label"):
            action.add_argument("key", metavar="KEY", help="review/<dataset>/<file>, or just <file>")
        if name == "label":
            action.add_argument("label", metavar="LABEL", help="the clinician's label (a dataset class)")
            action.add_argument(
                "--reviewer",
                default=os.environ.get(REVIEWER_ENV) or getpass.getuser(),
                help=f"who gives the label, as the verdict and its DICOM SR record it (default: "
                f"${REVIEWER_ENV}, else the login name)",
            )
            action.add_argument(
                "--preset",
                help="the preset that labels the dataset (default: $DATASET_PRESETS' entry, else the "
                "dataset's own name, as annotate reads it)",
            )
        action.add_argument("--dataset", required=True)
        action.add_argument("--bucket", help=f"the data bucket (default: ${BUCKET_ENV})")
        add_endpoint_arguments(action)
        if name != "show":
            action.add_argument("--json", action="store_true", help="print JSON")
        action.set_defaults(func={"list": run_list, "show": run_show, "label": run_label}[name])


def _queue(args: argparse.Namespace) -> ReviewQueue:
    """The review queue of ``--bucket`` / ``$MEDIMAGE_BUCKET`` (which ``--stack-json`` sets)."""
    from medimage.adapters.s3 import S3ObjectStore
    from medimage.inference.review import ReviewQueue
    from medimage.ops.stack import client

    apply_endpoint_arguments(args)
    bucket = args.bucket or os.environ.get(BUCKET_ENV)
    if not bucket:
        raise ValueError(f"no bucket: pass --bucket or --stack-json, or set {BUCKET_ENV}")
    return ReviewQueue(S3ObjectStore(str(bucket), client("s3")))


def run_list(args: argparse.Namespace) -> int:
    from medimage.ops.stack import aws_errors

    with aws_errors():
        items = _queue(args).list(args.dataset)
    if args.json:
        print(json.dumps([item.to_dict() for item in items], indent=2))
        return 0
    if not items:
        print(f"dataset {args.dataset}: nothing waits for review")
        return 0
    print(f"dataset {args.dataset}: {len(items)} image(s) wait for review (least confident first)")
    for item in items:
        confidence = f"{item.confidence:.3f}" if item.confidence is not None else "-"
        print(
            f"  {item.name:40} model says {item.label or '-':12} confidence {confidence:6} "
            f"{item.review_reason or '-':15} {item.model_version or '-'} {item.predicted_at or ''}"
        )
    return 0


def run_show(args: argparse.Namespace) -> int:
    from medimage.ops.stack import aws_errors

    with aws_errors():
        record = _queue(args).show(args.dataset, args.key)
    print(json.dumps(record, indent=2, sort_keys=True))
    return 0


def run_label(args: argparse.Namespace) -> int:
    from medimage.core.presets import get_preset
    from medimage.ops.stack import aws_errors
    from medimage.services.datasets import DatasetResolver

    if args.preset:
        preset = get_preset(args.preset)
    else:
        preset = DatasetResolver.from_json(os.environ.get("DATASET_PRESETS")).preset_for(args.dataset)
    with aws_errors():
        done = _queue(args).label(args.dataset, args.key, args.label, preset, reviewer=args.reviewer)
    if args.json:
        print(json.dumps(done.to_dict(), indent=2))
    else:
        said = f" (the model said {done.model_label})" if done.model_label else ""
        print(f"{done.name} labelled {done.label}{said}: now {done.labeled_key}")
    return 0
