"""`medimage`: the command line. Each command is a module: ``NAME``, ``HELP``, ``DESCRIPTION``,
``add_arguments(parser)`` and ``run(args)`` (or, with sub-actions, a ``func`` default per action)."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from medimage.core.errors import MedimageError

# Modules under medimage.cli that register sub-commands, in the order `--help` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "demo_cmd",
    "up_cmd",
    "presets_cmd",
    "train_cmd",
    "evaluate_cmd",
    "audit_cmd",
    "model_cmd",
    "review_cmd",
    "predict_cmd",
    "export_cmd",
    "serve_cmd",
    "ingest_cmd",
    "pipeline_cmd",
    "deploy_cmd",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medimage",
        description="Learn to classify medical images and label new ones, locally or on AWS.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run 'medimage COMMAND --help' for the examples of each command.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        command = importlib.import_module(f"medimage.cli.{name}")
        parser_ = sub.add_parser(
            command.NAME,
            help=command.HELP,
            description=command.DESCRIPTION,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        command.add_arguments(parser_)
        if hasattr(command, "run"):
            parser_.set_defaults(func=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (MedimageError, FileNotFoundError, NotADirectoryError, ValueError) as exc:
        print(f"medimage {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
