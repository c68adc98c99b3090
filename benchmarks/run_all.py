"""Run every benchmark in sequence (``make bench``); each JSON goes to build/bench/, one summary is printed.

    .venv/bin/python benchmarks/run_all.py [--skip-training] [--out build/bench]

Order: ingest (annotate + split on moto), training with the default settings for both ChestXRay2017
presets (their models kept under the output folder), the acquisition-shift report of both models, and
the LiteRT vs full TensorFlow inference benchmark, drop-to-label throughput and the clinical-format check on
the binary model, the decoder on clinical formats, and the pipeline under AWS faults and races (500 real
X-rays, about 4 minutes). With --skip-training the models
already in the output folder are reused. About 35 minutes on a 2-core machine with the real data; the
parts that need ../shared/data report "skipped" where it is absent.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PRESETS = ("chestxray2017-binary", "chestxray2017")


def run(name: str, command: list[str], out: Path) -> dict[str, Any]:
    print(f"[bench] {name}: {' '.join(command)}", file=sys.stderr, flush=True)
    started = time.monotonic()
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
    (out / f"{name}.log").write_text(done.stderr, encoding="utf-8")
    try:
        result = json.loads(done.stdout)
    except json.JSONDecodeError:
        result = {"error": f"exit {done.returncode}, no JSON on stdout; see {out / (name + '.log')}"}
    (out / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"[bench] {name}: {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=REPO / "build" / "bench")
    parser.add_argument("--skip-training", action="store_true", help="reuse the models in --out")
    args = parser.parse_args(argv)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    python = sys.executable
    results: dict[str, Any] = {}
    results["ingest"] = run("ingest", [python, "benchmarks/ingest_bench.py", "--images", "300"], out)
    for preset in PRESETS:
        model = out / f"model-{preset}"
        if not args.skip_training:
            results[f"train-{preset}"] = run(
                f"train-{preset}", [python, "benchmarks/train_bench.py", preset, "--out", str(model)], out
            )
        if (model / "model.tflite").is_file():
            results[f"shift-{preset}"] = run(
                f"shift-{preset}",
                [python, "benchmarks/shift_bench.py", "--preset", preset, "--model", str(model)],
                out,
            )
    binary = out / "model-chestxray2017-binary"
    shared = Path(os.environ.get("MEDIMAGE_SHARED_DATA", REPO.parent / "shared" / "data"))
    images = shared / "chestxray2017-val-fullres"
    results["decode"] = run("decode", [python, "benchmarks/decode_bench.py"], out)
    if (shared / "chestxray2017-224-train").is_dir():
        results["faults"] = run(
            "faults",
            [python, "benchmarks/fault_bench.py", "--images", str(shared / "chestxray2017-224-train")],
            out,
        )
    if (binary / "model.json").is_file() and images.is_dir():
        results["inference"] = run(
            "inference",
            [python, "benchmarks/inference_bench.py", "--model", str(binary), "--images", str(images)],
            out,
        )
        results["drop-to-label"] = run(
            "drop-to-label",
            [python, "benchmarks/drop_bench.py", "--model", str(binary), "--images", str(images)],
            out,
        )
        results["silent-trial"] = run(
            "silent-trial",
            [python, "benchmarks/trial_bench.py", "--model", str(binary), "--images", str(images)],
            out,
        )
        results["clinical-formats"] = run(
            "clinical-formats",
            [
                python,
                "benchmarks/format_bench.py",
                "--model",
                str(binary),
                "--data",
                str(shared / "chestxray2017-224-train"),
                "--preset",
                "chestxray2017-binary",
                "--split",
                "val",
                "--fullres",
                str(images),
            ],
            out,
        )
    print(json.dumps(results, indent=2))
    return 0 if all("error" not in r for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
