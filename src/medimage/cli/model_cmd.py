"""`medimage model list|rollback`: the production history of a dataset, and swapping it back."""

from __future__ import annotations

import argparse
import json
import os

from medimage.cli.common import add_endpoint_arguments, apply_endpoint_arguments
from medimage.core.registry import ProductionPointer
from medimage.ops.stack import BUCKET_ENV

NAME = "model"
HELP = "show a dataset's production model history, or roll production back"
DESCRIPTION = (
    "The model registry in the data bucket (models/<dataset>/production.json).\n\n"
    "examples:\n"
    "  medimage model list --dataset chestxray2017 --bucket my-data-bucket\n"
    "  MEDIMAGE_BUCKET=my-data-bucket medimage model rollback --dataset chestxray2017\n"
    "  medimage model rollback --dataset chestxray2017 --to 20261125T190500Z-1a2b3c4d-9f8e7d6c\n"
    "  medimage model list --dataset chestxray2017 --stack-json up-output/stack.json   # `medimage up`"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    for name, text in (
        ("list", "print the production version and its history (newest first)"),
        ("rollback", "make the previous version (or --to VERSION) production again"),
    ):
        action = actions.add_parser(name, help=text, description=text)
        action.add_argument("--dataset", required=True)
        action.add_argument("--bucket", help=f"the data bucket (default: ${BUCKET_ENV})")
        add_endpoint_arguments(action)
        action.add_argument("--json", action="store_true", help="print production.json as JSON")
        if name == "rollback":
            action.add_argument("--to", metavar="VERSION", help="an older version from the history")
        action.set_defaults(func=run_list if name == "list" else run_rollback)


def _bucket(args: argparse.Namespace) -> str:
    """``--bucket``, else ``$MEDIMAGE_BUCKET`` (which ``--stack-json`` sets); clients made after this call
    use ``--endpoint-url``."""
    apply_endpoint_arguments(args)
    bucket = args.bucket or os.environ.get(BUCKET_ENV)
    if not bucket:
        raise ValueError(f"no bucket: pass --bucket or --stack-json, or set {BUCKET_ENV}")
    return str(bucket)


def _print(pointer: ProductionPointer, as_json: bool) -> None:
    if as_json:
        print(json.dumps(pointer.to_dict(), indent=2))
        return
    print(f"dataset {pointer.dataset}: production {pointer.version}")
    for i, entry in enumerate(pointer.history):
        accuracy = entry.metrics.get("accuracy")
        shown = f"{accuracy:.4f}" if isinstance(accuracy, int | float) else "-"
        marker = "*" if i == 0 else " "
        print(
            f"{marker} {entry.version:40} {entry.promoted_at:32} accuracy={shown:7} "
            f"sha256={entry.model_sha256[:12]} {entry.action}"
        )
    for withdrawn in pointer.rolled_back:
        print(f"  {withdrawn['version']:40} rolled back {withdrawn['rolled_back_at']}")


def run_list(args: argparse.Namespace) -> int:
    from medimage.adapters.registry_store import S3RegistryStore

    pointer = S3RegistryStore(_bucket(args)).pointer(args.dataset)
    if pointer is None:
        print(f"dataset {args.dataset}: no model has been promoted yet")
        return 1
    _print(pointer, args.json)
    return 0


def run_rollback(args: argparse.Namespace) -> int:
    from medimage.adapters.registry_store import S3RegistryStore
    from medimage.adapters.s3 import S3ObjectStore
    from medimage.services.promote import rollback_production

    bucket = _bucket(args)
    pointer = rollback_production(S3ObjectStore(bucket), S3RegistryStore(bucket), args.dataset, args.to)
    _print(pointer, args.json)
    return 0
