"""Benchmark: nothing lost when AWS misbehaves. Prints JSON.

    .venv/bin/python benchmarks/fault_bench.py --images DIR [--count 500] [--rate 0.12] [--seed 1]
                                               [--stack up|in-process]

Runs the pipeline on the local stack of `medimage up` (moto server on loopback, the SQS pollers, the real
handlers and Step Functions interpreter; the quick stand-in trainer, not train.py) over ``--count`` real
X-rays from DIR's label folders (default ../shared/data/chestxray2017-224-train) plus broken files, with
faults at ``--rate`` of the functions' AWS call attempts (server errors, throttling, read timeouts after
the write, crashes after the Nth call) and the races: the same object delivered three times and out of
order, 8 uploaders at once, two `_commit`s at once, two executions finishing at once, a rollback during
a promotion. Then audits the bucket, the catalog and the executions (`harness.benchmarking.fault_run`).

Exits 1 unless lost = 0, duplicate_records = 0, production_valid, no broken guarantee and at least
``--min-faults`` faults.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the test and benchmark harness, harness/
SHARED = Path(os.environ.get("MEDIMAGE_SHARED_DATA", REPO.parent / "shared" / "data"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=Path, default=SHARED / "chestxray2017-224-train")
    parser.add_argument("--count", type=int, default=500, help="real images to upload (default 500)")
    parser.add_argument("--rate", type=float, default=0.12, help="fault share of call attempts")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--stack", choices=("up", "in-process"), default="up")
    parser.add_argument("--min-faults", type=int, default=100)
    args = parser.parse_args(argv)
    os.environ.setdefault("MEDIMAGE_TF_THREADS", "1")
    from harness.benchmarking.fault_run import run_faults, shortfalls
    from harness.benchmarking.fault_scenario import FaultRunOptions
    from harness.benchmarking.fault_uploads import load_images

    images = load_images(args.images, args.count)
    options = FaultRunOptions(rate=args.rate, seed=args.seed, stack=args.stack)
    # The handlers log JSON lines to stdout: keep stdout for this benchmark's one JSON object.
    with contextlib.redirect_stdout(sys.stderr):
        result = run_faults(images, options)
    result["source"] = str(args.images)
    result["machine"] = f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    print(json.dumps(result, indent=2))
    failures = shortfalls(result, args.min_faults)
    for failure in failures:
        print(f"fault_bench: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
