"""Benchmark: `medimage up` through its live path, as a client sees it. Prints JSON.

    .venv/bin/python benchmarks/up_bench.py [--images DIR] [--count 1000] [--epochs 2] [--drop 20]

1. ready: from starting `medimage up` (a subprocess, free ports) to its stack.json;
2. annotate throughput: ``--count`` images (sampled evenly over DIR's label folders; default
   /work/shared/data/chestxray2017-224-train, synthetic images where it is absent) uploaded by 8 client
   threads with boto3; images/s from the first upload until the catalog holds every accepted image and the
   annotate queue is empty;
3. commit -> production: `_commit`, then until models/<dataset>/production.json appears (or the execution
   ends without promoting: the gate's decision is reported);
4. drop-to-label: ``--drop`` images uploaded one by one to incoming/unlabeled/, latency of each from its
   PutObject to its prediction object (p50, p95); only with a production model.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

import boto3  # noqa: E402

from medimage.core import layout  # noqa: E402
from medimage.core.label_tree import files_by_label  # noqa: E402
from medimage.core.presets import get_preset  # noqa: E402
from medimage.local.synthetic import generate  # noqa: E402

DEFAULT_IMAGES = Path("/work/shared/data/chestxray2017-224-train")
DATASET = "chestxray2017-binary"
UP = [sys.executable, "-m", "medimage.cli.main", "up"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ports(port: int, api_port: int) -> list[str]:
    return ["--port", str(port), "--api-port", str(api_port)]


def load_images(folder: Path | None, count: int) -> tuple[list[tuple[str, bytes]], str]:
    """(relative key under the dataset, bytes), evenly over the label folders; synthetic when absent."""
    if folder and folder.is_dir():
        per_label = files_by_label(folder)
        picked: list[Path] = []
        while len(picked) < count and any(per_label.values()):
            for files in per_label.values():
                if files and len(picked) < count:
                    picked.append(files.pop(0))
        return [(p.relative_to(folder).as_posix(), p.read_bytes()) for p in picked], str(folder)
    files = generate(get_preset(DATASET), per_class=(count + 1) // 2, size=128, seed=11)[:count]
    return [(f"{f.folder}/{f.filename}", f.data) for f in files], "synthetic"


def wait_for(probe: Any, timeout_s: float, poll_s: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(poll_s)
    raise TimeoutError("timed out")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--drop", type=int, default=20, help="images for the drop-to-label latency")
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()
    images, source = load_images(args.images, args.count + args.drop)
    labeled, dropped = images[: args.count], images[args.count :]
    workdir = Path(tempfile.mkdtemp(prefix="up-bench-"))
    port, api_port = free_port(), free_port()
    started = time.perf_counter()
    proc = subprocess.Popen(
        [*UP, "--workdir", str(workdir), "--epochs", str(args.epochs), *ports(port, api_port)],
        stdout=(workdir / "up.out").open("w"),
        stderr=subprocess.STDOUT,
        cwd=REPO,
    )
    result: dict[str, Any] = {
        "benchmark": "up",
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "images": {
            "source": source,
            "labeled": len(labeled),
            "dropped": len(dropped),
            "threads": args.threads,
        },
        "epochs": args.epochs,
    }
    try:
        stack_json = workdir / "stack.json"
        wait_for(stack_json.exists, 180)
        result["ready_s"] = round(time.perf_counter() - started, 2)
        stack = json.loads(stack_json.read_text())
        session = boto3.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
        )
        from botocore.config import Config

        config = Config(max_pool_connections=args.threads * 2)
        s3 = session.client("s3", endpoint_url=stack["endpoint_url"], config=config)
        sqs = session.client("sqs", endpoint_url=stack["endpoint_url"])
        ddb = session.client("dynamodb", endpoint_url=stack["endpoint_url"])
        sfn = session.client("stepfunctions", endpoint_url=stack["endpoint_url"])
        bucket = stack["bucket"]

        # 2. annotate throughput through S3 -> SQS -> annotate
        t0 = time.perf_counter()
        local = threading.local()

        def put(item: tuple[str, bytes]) -> None:
            if not hasattr(local, "s3"):
                local.s3 = session.client("s3", endpoint_url=stack["endpoint_url"], config=config)
            local.s3.put_object(
                Bucket=bucket, Key=f"{layout.LABELED_PREFIX}{DATASET}/{item[0]}", Body=item[1]
            )

        with ThreadPoolExecutor(args.threads) as pool:
            list(pool.map(put, labeled))
        uploaded_s = time.perf_counter() - t0

        def drained() -> bool:
            attrs = sqs.get_queue_attributes(
                QueueUrl=stack["queues"]["AnnotateQueue"],
                AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
            )["Attributes"]
            return sum(int(v) for v in attrs.values()) == 0

        wait_for(drained, 3600, poll_s=0.5)
        annotate_s = time.perf_counter() - t0
        catalogued = ddb.scan(TableName=stack["table"], Select="COUNT")["Count"]
        result["annotate"] = {
            "upload_s": round(uploaded_s, 2),
            "upload_images_per_s": round(len(labeled) / uploaded_s, 1),
            "drained_s": round(annotate_s, 2),
            "images_per_s": round(len(labeled) / annotate_s, 1),
            "catalog_items": catalogued,
        }

        # 3. commit -> production
        t0 = time.perf_counter()
        s3.put_object(Bucket=bucket, Key=layout.commit_key(DATASET), Body=b"")
        pointer_key = layout.production_pointer_key(DATASET)

        def promoted_or_ended() -> str | None:
            if s3.list_objects_v2(Bucket=bucket, Prefix=pointer_key).get("KeyCount"):
                return "promoted"
            executions = sfn.list_executions(stateMachineArn=stack["state_machine_arn"])["executions"]
            ended = [e for e in executions if e["status"] != "RUNNING"]
            return f"ended {ended[0]['status']} without promoting" if ended else None

        outcome = wait_for(promoted_or_ended, 3600, poll_s=0.5)
        executions = sfn.list_executions(stateMachineArn=stack["state_machine_arn"])["executions"]
        described = sfn.describe_execution(executionArn=executions[0]["executionArn"]) if executions else {}
        gate = (json.loads(described.get("output") or "{}").get("gate") or {}).get("decision") or {}
        result["commit_to_production"] = {
            "seconds": round(time.perf_counter() - t0, 2),
            "outcome": outcome,
            "gate_passed": gate.get("passed"),
            "test_accuracy": gate.get("accuracy"),
            "reasons": gate.get("reasons"),
        }

        # 4. drop-to-label latency
        if outcome == "promoted" and dropped:
            latencies = []
            for name, body in dropped:
                key = f"{layout.UNLABELED_PREFIX}{DATASET}/{name.replace('/', '-')}"
                sent = time.perf_counter()
                s3.put_object(Bucket=bucket, Key=key, Body=body)
                prediction = layout.prediction_key(DATASET, key)
                wait_for(
                    lambda k=prediction: s3.list_objects_v2(Bucket=bucket, Prefix=k).get("KeyCount"),
                    120,
                    0.05,
                )
                latencies.append(time.perf_counter() - sent)
            result["drop_to_label_s"] = {
                "n": len(latencies),
                "p50": round(statistics.median(latencies), 3),
                "p95": round(percentile(latencies, 0.95), 3),
                "note": "one image at a time: includes the event source mapping's 5 s batching window",
            }
        else:
            result["drop_to_label_s"] = None
    finally:
        proc.send_signal(signal.SIGINT)
        t0 = time.perf_counter()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        result["stop_s"] = round(time.perf_counter() - t0, 2)
        result["workdir"] = str(workdir)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
