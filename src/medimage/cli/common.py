"""Arguments several commands share (no command imports another)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_tree_arguments(parser: argparse.ArgumentParser) -> None:
    """``--data DIR --preset NAME``: a folder-per-label image tree and the preset that labels it."""
    parser.add_argument("--data", required=True, type=Path, help="folder-per-label image tree")
    parser.add_argument(
        "--preset", required=True, help="dataset preset that labels the tree (see 'medimage presets')"
    )


def add_stack_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stack", help="CloudFormation stack name (default: samconfig.toml's stack_name)")
    parser.add_argument(
        "--config-env",
        default="default",
        help="samconfig.toml environment whose stack_name to use (default: default)",
    )
