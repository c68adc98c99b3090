"""`medimage bench inference`: the command around `medimage.benchmarking.inference`."""

from __future__ import annotations

import argparse
import json

NAME = "bench"
HELP = "benchmark the inference handler (LiteRT against full TensorFlow and the bare floor), JSON output"
DESCRIPTION = (
    "Benchmark inference: cold start, warm latency (full resolution and 224x224), throughput,\n"
    "peak memory and shipped size, for the LiteRT and a full-TensorFlow handler (model.keras in a\n"
    "tf.function), the bare floor (decode + one int8 invoke), the ratios and the targets.\n\nexample:\n"
    "  medimage bench inference --model out/model/model.tflite --images ../shared/data/"
    "chestxray2017-val-fullres"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("what", choices=["inference"])
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


def run(args: argparse.Namespace) -> int:
    from medimage.benchmarking.inference import run as run_benchmark

    report = run_benchmark(
        args.model, args.images, args.repeat, args.batch, args.cpu, args.runtimes, args.cold_runs
    )
    print(json.dumps(report, indent=2))
    return 0
