"""The container benchmark's arithmetic: the emulator's REPORT lines and the cost per million predictions."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "container_bench", REPO / "benchmarks" / "container_bench.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["container_bench"] = module
    spec.loader.exec_module(module)
    return module


LOGS = "\n".join(
    [
        "START RequestId: 1 Version: $LATEST",
        "REPORT RequestId: 1\tInit Duration: 0.07 ms\tDuration: 962.55 ms\tBilled Duration: 963 ms\t"
        "Memory Size: 512 MB\tMax Memory Used: 512 MB\t",
        '{"level":"INFO","message":"predicted"}',
        "REPORT RequestId: 2\tDuration: 8.46 ms\tBilled Duration: 9 ms\tMemory Size: 512 MB\t"
        "Max Memory Used: 512 MB",
    ]
)


def test_report_lines_are_parsed_with_the_cold_start_only_on_the_first() -> None:
    reports = _bench().parse_reports(LOGS)
    assert reports == [
        {"duration_ms": 962.55, "billed_ms": 963.0, "init_ms": 0.07},
        {"duration_ms": 8.46, "billed_ms": 9.0},
    ]


def test_cost_per_million_predictions_follows_the_price_list() -> None:
    bench = _bench()
    run = {"memory_mb": 1024, "cpus": 0.58, "warm_p50_ms": 7.2, "cold_ms": 999.4}
    # GIVEN no cold starts: 1e6 requests x 8 ms billed x 1 GB x price per GB-s, plus the request price
    (row,) = bench.cost_table([run], cold_start_share=0.0)
    assert row["usd_per_million_compute"] == pytest.approx(
        1e6 * 0.008 * bench.PRICES["usd_per_gb_second"], abs=1e-3
    )
    assert row["usd_per_million_total"] == pytest.approx(row["usd_per_million_compute"] + 0.20, abs=1e-3)
    # WHEN one request in ten starts cold, its second of billed cold start is added
    (cold,) = bench.cost_table([run], cold_start_share=0.1)
    expected = 1e6 * (0.9 * 0.008 + 0.1 * 1.0) * bench.PRICES["usd_per_gb_second"]
    assert cold["usd_per_million_compute"] == pytest.approx(expected, abs=1e-3)
