"""`medimage presets`: list the dataset presets and what each one decides."""

from __future__ import annotations

import argparse
import json

from medimage.core.presets import all_presets

NAME = "presets"
HELP = "list dataset presets (classes, label rules, split ratios, gate thresholds)"
DESCRIPTION = "List the dataset presets.\n\nexample:\n  medimage presets --json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    presets = all_presets()
    if args.json:
        print(
            json.dumps(
                {
                    n: {
                        "classes": p.classes,
                        "split": p.split_ratios,
                        "min_accuracy": p.gate.min_accuracy,
                        "min_recall": p.gate.min_recall,
                    }
                    for n, p in sorted(presets.items())
                },
                indent=2,
            )
        )
        return 0
    for name, p in sorted(presets.items()):
        classes = ", ".join(p.classes) if p.classes else "(folder names)"
        print(f"{name:22} {classes:40} min_accuracy={p.gate.min_accuracy}  {p.description}")
    return 0
