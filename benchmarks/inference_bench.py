"""Benchmark: the inference handler, LiteRT against full TensorFlow and against the bare floor. Prints JSON.

    .venv/bin/python benchmarks/inference_bench.py --model DIR --images DIR
                     [--repeat 5] [--batch 64] [--cpu N] [--runtimes litert,tensorflow] [--cold-runs 5]

Cold start, warm latency (full resolution and 224x224), throughput, peak memory and shipped size, for the
LiteRT handler and a full-TensorFlow handler (model.keras in a tf.function), the bare floor (decode + one
int8 invoke), the ratios and the targets (``harness.benchmarking.inference``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the test and benchmark harness, harness/


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model",
        required=True,
        help="model directory (its model.json's model_file serves) or .tflite; model.keras beside it for TF",
    )
    parser.add_argument("--images", required=True, help="folder of JPEG/PNG images (searched recursively)")
    parser.add_argument("--repeat", type=int, default=5, help="warm passes over the images")
    parser.add_argument("--batch", type=int, default=64, help="images in the throughput batch")
    parser.add_argument(
        "--cpu", type=int, default=None, help="core to pin each run to (default: the first allowed)"
    )
    parser.add_argument("--runtimes", default="litert,tensorflow")
    parser.add_argument(
        "--cold-runs", type=int, default=5, help="fresh processes per runtime; cold_start_s is their median"
    )
    args = parser.parse_args(argv)
    from harness.benchmarking.inference import run
    from medimage.core.errors import MedimageError

    try:
        report = run(
            args.model, args.images, args.repeat, args.batch, args.cpu, args.runtimes, args.cold_runs
        )
    except (MedimageError, FileNotFoundError, NotADirectoryError, ValueError) as exc:
        print(f"inference_bench: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
