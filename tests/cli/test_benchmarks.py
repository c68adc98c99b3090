"""The benchmarks' contract: stdout is one JSON document (``make bench`` parses it), logs go to stderr."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def test_ingest_benchmark_prints_only_its_json(tmp_path: Path) -> None:
    # GIVEN the ingest benchmark on a few images (its handlers print CloudWatch metric lines to stdout)
    done = subprocess.run(
        [sys.executable, "benchmarks/ingest_bench.py", "--images", "6", "--split-sizes", "50"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    # THEN stdout parses as one JSON object with every part, and the metric lines went to stderr
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert report["annotate"]["images"] == 6 and report["annotate"]["failed"] == 0
    assert [s["catalogued"] for s in report["split"]] == [50]
    assert '"CloudWatchMetrics"' not in done.stdout


def test_bench_inference_checks_each_target_against_the_figure_of_its_run() -> None:
    from harness.benchmarking.figures import TARGETS, check_targets

    # GIVEN a run whose handler is near the floor and fast to start, against a slow full-TensorFlow handler
    report = {
        "litert": {"handler_vs_floor_p50": 1.21, "cold_start_s": 0.16},
        "ratios": {"cold_start_speedup_vs_tensorflow": 24.0},
    }
    targets = check_targets(report)
    # THEN each target carries its bound and the figure, and says whether it is met
    assert set(targets) == set(TARGETS)
    assert targets["handler_vs_floor_p50"] == {"max": 1.3, "measured": 1.21, "met": True}
    assert targets["cold_start_s"] == {"max": 0.15, "measured": 0.16, "met": False}
    assert targets["cold_start_speedup_vs_tensorflow"] == {"min": 20.0, "measured": 24.0, "met": True}
    # AND a run without the TensorFlow side cannot claim the speed-up
    alone = check_targets({"litert": report["litert"], "ratios": {}})
    assert alone["cold_start_speedup_vs_tensorflow"]["met"] is None


def test_a_cold_start_ratio_pairs_the_runs_that_took_turns() -> None:
    import statistics

    from harness.benchmarking.figures import paired_ratio

    # GIVEN the two sides of a run on a machine that slowed down for its last two pairs
    litert = [0.154, 0.155, 0.152, 0.213, 0.234]
    tensorflow = [2.793, 2.858, 3.563, 4.020, 3.755]
    # THEN the ratio is the median of the pairs' ratios (18.1, 18.4, 23.4, 18.9, 16.0)
    assert paired_ratio(tensorflow, litert) == pytest.approx(18.44, abs=0.01)
    # AND not the ratio of the medians, which pairs a slow TensorFlow run with a fast LiteRT one
    assert statistics.median(tensorflow) / statistics.median(litert) == pytest.approx(22.99, abs=0.01)
    # AND sides with different numbers of runs cannot be paired
    with pytest.raises(ValueError):
        paired_ratio([1.0, 2.0], [1.0])
