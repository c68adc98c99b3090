"""Benchmark: the real inference container under the Lambda Runtime Interface Emulator. Prints JSON.

    scripts/bench-container.sh --model DIR --images DIR      # make bench-container; needs Docker
    .venv/bin/python benchmarks/container_bench.py --model DIR --images DIR --base-image IMG --rie PATH

The inference image is built from ``functions/inference/Dockerfile`` on the local Lambda python3.13 base image
(``scripts/build-lambda-base-image.sh``, as ``make test-sam`` does). For each CPU share (``--cpus``; AWS
gives a function a share of a vCPU proportional to its memory, one full vCPU at 1,769 MB) a fresh container
runs the handler under the emulator SAM CLI ships (``aws-lambda-rie``), with the model on local disk
(``MEDIMAGE_MODEL``) and tracing off, and receives one cold and ``--invocations`` warm ``POST /predict``
events carrying the full-resolution images in turn. Durations are the emulator's own ``REPORT`` lines; the
emulator starts the runtime inside the first invocation, so its Init Duration is near zero and the first
Duration holds the whole cold start (imports, model load, first answer). Peak memory is the container's
cgroup high-water mark (the emulator reports the limit as "Max Memory Used"). The cost table turns the
billed durations into a price per million predictions with the price list named in ``PRICES``.
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import re
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from medimage.core.label_tree import image_files

REPO = Path(__file__).resolve().parents[1]
IMAGE_TAG = "medimage-inference:bench"
INVOKE_PATH = "/2015-03-31/functions/function/invocations"

# AWS Lambda on-demand prices, x86_64, us-east-1 (aws.amazon.com/lambda/pricing, first pricing tier):
# duration per GB-second and requests per million; billed duration is rounded up to the millisecond, and the
# INIT phase of a cold start is billed as duration too (since August 2025).
PRICES = {
    "source": "AWS Lambda pricing, x86_64, US East (N. Virginia), first 6 billion GB-seconds per month",
    "usd_per_gb_second": 0.0000166667,
    "usd_per_million_requests": 0.20,
}
# Memory sizes of the cost table and the CPU share AWS gives each (memory / 1,769 MB of one vCPU).
MEMORY_MB_FOR_CPUS = {0.29: 512, 0.58: 1024, 1.0: 1769}

REPORT = re.compile(
    r"REPORT RequestId: \S+\s+(?:Init Duration: (?P<init>[\d.]+) ms\s+)?Duration: (?P<duration>[\d.]+) ms"
    r"\s+Billed Duration: (?P<billed>\d+) ms\s+Memory Size: (?P<memory>\d+) MB"
)


def _run(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, check=True, capture_output=True, text=True, **kwargs)


def build_image(base_image: str) -> dict[str, Any]:
    started = time.monotonic()
    _run(
        [
            "docker",
            "build",
            "-q",
            "-f",
            "functions/inference/Dockerfile",
            "--build-arg",
            f"BASE_IMAGE={base_image}",
            "-t",
            IMAGE_TAG,
            ".",
        ],
        cwd=REPO,
    )
    size = int(_run(["docker", "image", "inspect", "--format", "{{.Size}}", IMAGE_TAG]).stdout.strip())
    return {
        "tag": IMAGE_TAG,
        "base_image": base_image,
        "size_mb": round(size / 1e6, 1),
        "build_s": round(time.monotonic() - started, 1),
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def api_event(image: bytes) -> bytes:
    """A REST API proxy event for ``POST /predict`` with the image as its base64 body."""
    event = {
        "resource": "/predict",
        "path": "/predict",
        "httpMethod": "POST",
        "headers": {"Content-Type": "application/octet-stream", "Accept": "application/json"},
        "queryStringParameters": None,
        "pathParameters": None,
        "requestContext": {
            "requestId": "bench",
            "stage": "Prod",
            "resourcePath": "/predict",
            "httpMethod": "POST",
        },
        "body": base64.b64encode(image).decode("ascii"),
        "isBase64Encoded": True,
    }
    return json.dumps(event).encode("utf-8")


def _invoke(port: int, payload: bytes, timeout: float = 120.0) -> tuple[float, dict[str, Any]]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{INVOKE_PATH}", data=payload, method="POST")
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=timeout) as response:
        body = json.loads(response.read())
    return (time.perf_counter() - started) * 1000, body


def _wait_ready(port: int, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"the emulator did not listen on port {port} within {seconds} s")


def parse_reports(logs: str) -> list[dict[str, float]]:
    reports = []
    for match in REPORT.finditer(logs):
        report = {"duration_ms": float(match["duration"]), "billed_ms": float(match["billed"])}
        if match["init"]:
            report["init_ms"] = float(match["init"])
        reports.append(report)
    return reports


def _peak_memory_mb(container: str) -> float | None:
    """The container's memory high-water mark (cgroup v1 or v2)."""
    for path in ("/sys/fs/cgroup/memory/memory.max_usage_in_bytes", "/sys/fs/cgroup/memory.peak"):
        done = subprocess.run(
            ["docker", "exec", container, "cat", path], capture_output=True, text=True, check=False
        )
        if done.returncode == 0 and done.stdout.strip().isdigit():
            return round(int(done.stdout) / 2**20, 1)
    return None


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def measure(cpus: float, model_dir: Path, rie: Path, images: list[bytes], invocations: int) -> dict[str, Any]:
    """One fresh container at this CPU share: the cold invocation, then ``invocations`` warm ones."""
    memory_mb = MEMORY_MB_FOR_CPUS.get(cpus, 1769)
    port = _free_port()
    container = _run(
        [
            "docker",
            "run",
            "-d",
            "--rm",
            f"--cpus={cpus}",
            f"--memory={memory_mb}m",
            "-p",
            f"127.0.0.1:{port}:8080",
            "-v",
            f"{rie.resolve()}:/usr/local/bin/aws-lambda-rie:ro",
            "-v",
            f"{model_dir.resolve()}:/opt/model:ro",
            "-e",
            "MEDIMAGE_MODEL=/opt/model",
            "-e",
            "POWERTOOLS_TRACE_DISABLED=true",
            # What Lambda sets from the template's LoggingConfig: the runtime writes each log record as JSON.
            "-e",
            "AWS_LAMBDA_LOG_FORMAT=JSON",
            "-e",
            "AWS_LAMBDA_LOG_LEVEL=INFO",
            "-e",
            f"AWS_LAMBDA_FUNCTION_MEMORY_SIZE={memory_mb}",
            "-e",
            "AWS_REGION=us-east-1",
            IMAGE_TAG,
        ]
    ).stdout.strip()
    try:
        _wait_ready(port)
        payloads = [api_event(image) for image in images]
        client_ms: list[float] = []
        labels: list[str] = []
        for i in range(invocations + 1):
            elapsed, body = _invoke(port, payloads[i % len(payloads)])
            if body.get("statusCode") != 200:
                raise RuntimeError(
                    f"invocation {i} answered {body.get('statusCode')}: {str(body.get('body'))[:300]}"
                )
            client_ms.append(elapsed)
            labels.append(json.loads(body["body"]).get("label", ""))
        time.sleep(0.5)  # the last REPORT line is written after the response
        peak_mb = _peak_memory_mb(container)
        logs = subprocess.run(["docker", "logs", container], capture_output=True, text=True, check=False)
        reports = parse_reports(logs.stdout + logs.stderr)
    finally:
        subprocess.run(["docker", "rm", "-f", container], capture_output=True, check=False)
    if len(reports) < invocations + 1:
        raise RuntimeError(f"expected {invocations + 1} REPORT lines, found {len(reports)}")
    cold, warm = reports[0], reports[1 : invocations + 1]
    durations = [r["duration_ms"] for r in warm]
    return {
        "cpus": cpus,
        "memory_mb": memory_mb,
        "init_duration_ms": cold.get("init_ms"),
        "first_duration_ms": cold["duration_ms"],
        "first_client_ms": round(client_ms[0], 1),
        "warm_n": len(warm),
        "warm_p50_ms": round(statistics.median(durations), 2),
        "warm_p95_ms": round(_percentile(durations, 0.95), 2),
        "warm_billed_p50_ms": statistics.median(r["billed_ms"] for r in warm),
        "warm_client_p50_ms": round(statistics.median(client_ms[1:]), 2),
        "cold_ms": round((cold.get("init_ms") or 0) + cold["duration_ms"], 1),
        "peak_memory_mb": peak_mb,
        "labels": sorted(set(labels)),
    }


def cost_table(runs: list[dict[str, Any]], cold_start_share: float) -> list[dict[str, Any]]:
    """Price per million predictions at each measured memory size: the warm billed duration for every
    request plus, for the stated share of cold requests, the billed cold start."""
    rows = []
    for run in runs:
        gb = run["memory_mb"] / 1024
        warm_s = math.ceil(run["warm_p50_ms"]) / 1000
        cold_s = math.ceil(run["cold_ms"]) / 1000
        seconds = (1 - cold_start_share) * warm_s + cold_start_share * cold_s
        compute = 1e6 * seconds * gb * PRICES["usd_per_gb_second"]
        rows.append(
            {
                "memory_mb": run["memory_mb"],
                "cpus": run["cpus"],
                "warm_p50_ms": run["warm_p50_ms"],
                "usd_per_million_compute": round(compute, 3),
                "usd_per_million_total": round(compute + PRICES["usd_per_million_requests"], 3),
                "warm_only_usd_per_million_total": round(
                    1e6 * warm_s * gb * PRICES["usd_per_gb_second"] + PRICES["usd_per_million_requests"], 3
                ),
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model", type=Path, required=True, help="a trained model directory (model.json, .tflite)"
    )
    parser.add_argument("--images", type=Path, required=True, help="a folder of full-resolution images")
    parser.add_argument("--base-image", default="medimage/lambda-python:3.13")
    parser.add_argument(
        "--rie", type=Path, required=True, help="the aws-lambda-rie binary (SAM CLI ships one)"
    )
    parser.add_argument("--cpus", default="0.29,0.58,1.0", help="CPU shares to measure, comma-separated")
    parser.add_argument("--invocations", type=int, default=50, help="warm invocations after the cold one")
    parser.add_argument(
        "--cold-start-share", type=float, default=0.01, help="share of requests that start cold"
    )
    args = parser.parse_args(argv)

    images = [p.read_bytes() for p in image_files(args.images)]
    if not images:
        parser.error(f"no images under {args.images}")
    meta = json.loads((args.model / "model.json").read_text(encoding="utf-8"))
    started = time.monotonic()
    image = build_image(args.base_image)
    runs = [measure(float(c), args.model, args.rie, images, args.invocations) for c in args.cpus.split(",")]
    table = cost_table(runs, args.cold_start_share)
    cheapest = min(table, key=lambda row: row["usd_per_million_total"])
    result = {
        "benchmark": "inference container under the Lambda Runtime Interface Emulator",
        "model": {"dir": str(args.model), "served": meta.get("model_file")},
        "images": len(images),
        "image": image,
        "runs": runs,
        "prices": PRICES,
        "cold_start_share": args.cold_start_share,
        "cost_per_million": table,
        "cheapest_memory_mb": cheapest["memory_mb"],
        "seconds": round(time.monotonic() - started, 1),
    }
    json.dump(result, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
