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
