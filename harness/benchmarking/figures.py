"""The figures a benchmark report is made of: percentiles, paired cold-start ratios and the serving
targets each inference report is checked against. Kept apart from the runs so the arithmetic is tested on
its own and shared by the inference and API-load benchmarks."""

from __future__ import annotations

import statistics
from typing import Any

# What "serving near the floor" means, checked in every report.
TARGETS = {
    "handler_vs_floor_p50": ("max", 1.3),
    "cold_start_s": ("max", 0.15),
    "cold_start_speedup_vs_tensorflow": ("min", 20.0),
}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def paired_ratio(numerators: list[float], denominators: list[float]) -> float:
    """The median of run-by-run ratios of two sides whose fresh processes took turns: a machine whose speed
    drifts during the run moves both sides of a pair alike, which a ratio of the two medians does not see."""
    return statistics.median(a / b for a, b in zip(numerators, denominators, strict=True))


def check_targets(report: dict[str, Any]) -> dict[str, Any]:
    """Each target with the figure measured in this run and whether it is met (None: not measured)."""
    litert = report.get("litert", {})
    measured = {
        "handler_vs_floor_p50": litert.get("handler_vs_floor_p50"),
        "cold_start_s": litert.get("cold_start_s"),
        "cold_start_speedup_vs_tensorflow": report.get("ratios", {}).get("cold_start_speedup_vs_tensorflow"),
    }
    checked = {}
    for name, (kind, bound) in TARGETS.items():
        value = measured[name]
        met = None if value is None else (value <= bound if kind == "max" else value >= bound)
        checked[name] = {kind: bound, "measured": value, "met": met}
    return checked
