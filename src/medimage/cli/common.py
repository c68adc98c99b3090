"""Arguments several commands share (no command imports another)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_tree_arguments(parser: argparse.ArgumentParser, required: bool = True) -> None:
    """``--data DIR --preset NAME``: a folder-per-label image tree and the preset that labels it (a command
    that takes them only in one mode checks them itself: ``required=False``)."""
    parser.add_argument("--data", required=required, type=Path, help="folder-per-label image tree")
    parser.add_argument(
        "--preset", required=required, help="dataset preset that labels the tree (see 'medimage presets')"
    )


def model_directory(model: Path) -> Path:
    """``--model``'s directory: the path itself, or the directory of a file in it (``model.tflite``,
    ``model.keras``...), as ``predict``, ``evaluate`` and ``serve`` take either."""
    model = Path(model)
    return model.parent if model.is_file() else model


def add_stack_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stack", help="CloudFormation stack name (default: samconfig.toml's stack_name)")
    parser.add_argument(
        "--config-env",
        default="default",
        help="samconfig.toml environment whose stack_name to use (default: default)",
    )
    add_endpoint_arguments(parser)


def add_endpoint_arguments(parser: argparse.ArgumentParser) -> None:
    """``--endpoint-url`` (another AWS endpoint, such as `medimage up`'s) and ``--stack-json`` (the
    stack.json `medimage up` writes, in place of a deployed stack's outputs)."""
    parser.add_argument(
        "--endpoint-url", help="AWS endpoint of every call (default: $AWS_ENDPOINT_URL, else AWS itself)"
    )
    parser.add_argument(
        "--stack-json",
        type=Path,
        metavar="PATH",
        help="stack.json of `medimage up`: its endpoint, bucket and state machine stand in for the stack",
    )


def apply_endpoint_arguments(args: argparse.Namespace) -> None:
    """Point this process's AWS clients where ``--endpoint-url`` / ``--stack-json`` say (before any client
    is made)."""
    from medimage.ops.stack import use_endpoint, use_stack_json

    if getattr(args, "stack_json", None):
        use_stack_json(args.stack_json)
    if getattr(args, "endpoint_url", None):
        use_endpoint(args.endpoint_url)
