"""Benchmark: `medimage serve` under 50 concurrent clients mixing good and bad requests.

    python benchmarks/api_load_bench.py --model /tmp/models/binary [--clients 50] [--duration 20]

Starts `medimage serve --model DIR --port 0` in a subprocess (the real Lambda handler behind the local API
Gateway proxy), then runs ``harness.benchmarking.api_load.run_load``: real full-resolution X-rays
(chestxray2017-val-fullres; generated images where it is absent) interleaved with bad requests (not an
image, empty, too large, wrong content type, bad JSON, unknown route). Prints one JSON object: statuses,
5xx count, unanswered requests (client timeout), p50/p95/max latency overall and per kind. Exits 1 when
any request got a 5xx, no answer, or a status other than the one the API contract gives it.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
from pathlib import Path

from medimage.core.label_tree import image_files

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the test and benchmark harness, harness/
SHARED = Path(os.environ.get("MEDIMAGE_SHARED_DATA", REPO.parent / "shared" / "data"))
FULLRES = SHARED / "chestxray2017-val-fullres"


def load_images(folder: Path, limit: int = 16) -> tuple[list[bytes], str]:
    files = image_files(folder)[:limit] if folder.is_dir() else []
    if files:
        return [p.read_bytes() for p in files], str(folder)
    return generated_images(limit), "generated"


def generated_images(count: int, size: int = 512) -> list[bytes]:
    """Noisy grey JPEGs and PNGs (a stand-in where the real X-rays are absent)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    out = []
    for i in range(count):
        pixels = rng.integers(0, 256, (size, size), dtype=np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels, "L").save(buffer, format="PNG" if i % 2 else "JPEG")
        out.append(buffer.getvalue())
    return out


def main(argv: list[str] | None = None) -> int:
    from harness.benchmarking.api_load import print_json, request_mix, run_load, send, serving

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="model directory or .tflite file")
    parser.add_argument("--images", type=Path, default=FULLRES)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of load")
    parser.add_argument("--timeout", type=float, default=60.0, help="client timeout per request (s)")
    args = parser.parse_args(argv)
    images, source = load_images(args.images)
    mix = request_mix(images)
    with serving(args.model) as url:
        warm = send(url, mix[0], args.timeout)  # model load outside the measured run
        run = run_load(url, mix, clients=args.clients, duration_s=args.duration, timeout_s=args.timeout)
    summary = run.summary()
    summary.update({"images": source, "model": str(args.model), "warm_up_status": warm.status})
    print_json(summary)
    failed = summary["server_errors_5xx"] or summary["unanswered"] or summary["unexpected_status"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
