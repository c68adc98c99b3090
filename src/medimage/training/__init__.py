"""The trainer's importable parts (``training/train.py`` is only the SageMaker script-mode entry point).

The trainer prints its metrics as ``name=value;`` pairs; ``METRIC_DEFINITIONS`` holds the regexes a
SageMaker ``MetricDefinitions`` list needs to read them (``\\b`` keeps ``accuracy`` from matching inside
``val_accuracy``), and ``parse_metrics`` applies the same regexes locally.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_NUMBER = r"([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"

# Names as CloudWatch / DescribeTrainingJob show them, with the regex for each.
METRIC_DEFINITIONS: list[dict[str, str]] = [
    {"Name": "train:loss", "Regex": rf"\bloss={_NUMBER};"},
    {"Name": "train:accuracy", "Regex": rf"\baccuracy={_NUMBER};"},
    {"Name": "validation:loss", "Regex": rf"\bval_loss={_NUMBER};"},
    {"Name": "validation:calibrated_loss", "Regex": rf"\bval_calibrated_loss={_NUMBER};"},
    {"Name": "validation:accuracy", "Regex": rf"\bval_accuracy={_NUMBER};"},
    {"Name": "validation:macro_auc", "Regex": rf"\bval_macro_auc={_NUMBER};"},
    {"Name": "test:accuracy", "Regex": rf"\btest_accuracy={_NUMBER};"},
    {"Name": "test:macro_auc", "Regex": rf"\btest_macro_auc={_NUMBER};"},
]


def format_metrics(prefix: str, values: dict[str, float | None]) -> str:
    """One log line such as ``epoch 3/20: loss=0.3120; val_accuracy=0.9100;`` (None values left out)."""
    pairs = " ".join(f"{name}={value:.6g};" for name, value in values.items() if value is not None)
    return f"{prefix} {pairs}".strip()


def parse_metrics(lines: Iterable[str]) -> dict[str, float]:
    """The last value of each metric in a log, as SageMaker's FinalMetricDataList would report it."""
    compiled = [(d["Name"], re.compile(d["Regex"])) for d in METRIC_DEFINITIONS]
    found: dict[str, float] = {}
    for line in lines:
        for name, regex in compiled:
            for match in regex.finditer(line):
                found[name] = float(match.group(1))
    return found
