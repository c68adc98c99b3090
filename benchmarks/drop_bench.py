"""Benchmark: drop-to-label throughput of one function instance for a 10-message SQS batch.

    python benchmarks/drop_bench.py --model DIR [--images DIR] [--batches 5] [--total 100000] [--instances N]

One warm inference handler (functions/inference/app.py) on an emulated S3 (moto, in-process): the model
directory is published as production, full-resolution X-rays are uploaded under incoming/unlabeled/, and
SQS batches of 10 S3 notifications are handed to the handler as Lambda would. Reports images per second
per instance (S3 reads and writes included, on moto), and the per-batch wall time. One JSON object.

A mass drop is labeled at that rate times the instances the SQS event source may run at once
(``DropToLabelConcurrency``, read from template.yaml unless ``--instances`` is given): ``at_volume`` says
how long ``--total`` images take at that rate, the queue holding the rest, and how much of the function's
reserved concurrency the API keeps.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MEDIMAGE_SHARED_DATA", REPO.parent / "shared" / "data"))
BATCH = 10  # the inference queue's BatchSize in template.yaml
BUCKET = "medimage-drop-bench"
DATASET = "chestxray2017-binary"


def sqs_record(key: str, size: int, n: int) -> dict[str, Any]:
    notification = {
        "Records": [
            {
                "eventSource": "aws:s3",
                "eventName": "ObjectCreated:Put",
                "s3": {
                    "bucket": {"name": BUCKET},
                    "object": {"key": key, "size": size, "sequencer": f"{n:016X}"},
                },
            }
        ]
    }
    return {
        "messageId": f"message-{n}",
        "receiptHandle": f"handle-{n}",
        "body": json.dumps(notification),
        "attributes": {"ApproximateReceiveCount": "1"},
        "eventSource": "aws:sqs",
        "eventSourceARN": f"arn:aws:sqs:us-east-1:123456789012:{BUCKET}",
    }


def publish(s3: Any, model_dir: Path) -> None:
    meta = json.loads((model_dir / "model.json").read_text())
    served = meta["model_file"]
    prefix = f"models/{DATASET}/bench/"
    for name in (served, "model.json", "labels.txt"):
        s3.put_object(Bucket=BUCKET, Key=prefix + name, Body=(model_dir / name).read_bytes())
    sha = hashlib.sha256((model_dir / served).read_bytes()).hexdigest()
    entry = {"version": "bench", "model_key": prefix + served, "model_sha256": sha, "promoted_at": "now"}
    pointer = {"dataset": DATASET, **entry, "metrics": {}, "history": [entry], "rolled_back": []}
    s3.put_object(Bucket=BUCKET, Key=f"models/{DATASET}/production.json", Body=json.dumps(pointer))


def template_default(parameter: str) -> str:
    from medimage.template_file import load_template

    return str(load_template(REPO / "template.yaml")["Parameters"][parameter]["Default"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", required=True, type=Path, help="model directory (model.json, labels.txt)")
    parser.add_argument("--images", type=Path, default=SHARED / "chestxray2017-val-fullres")
    parser.add_argument("--batches", type=int, default=5, help="timed batches after one warm-up batch")
    parser.add_argument("--total", type=int, default=100_000, help="images dropped at once, for at_volume")
    parser.add_argument(
        "--instances", type=int, help="drop-to-label instances (default: DropToLabelConcurrency's default)"
    )
    args = parser.parse_args(argv)
    images = sorted(args.images.rglob("*.jpeg"))
    if not images:
        print(json.dumps({"skipped": f"no JPEG X-rays under {args.images}"}))
        return 0
    os.environ.update(
        {
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "DATA_BUCKET": BUCKET,
            "DATASETS": DATASET,
            "DEFAULT_DATASET": DATASET,
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_METRICS_DISABLED": "true",
            "POWERTOOLS_SERVICE_NAME": "inference",
            "POWERTOOLS_LOG_LEVEL": "WARNING",
            "MODEL_CHECK_INTERVAL_S": "3600",
        }
    )
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    # The handler prints its logs and metric lines on stdout: they go to stderr, stdout keeps the JSON.
    sys.stdout.flush()
    result_fd = os.dup(1)
    os.dup2(2, 1)
    import boto3
    from moto import mock_aws

    from medimage.local.functions import LambdaContext, load_handler_module

    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        publish(s3, args.model)
        handler = load_handler_module()
        walls = []
        n = 0
        for batch in range(args.batches + 1):
            records = []
            for _ in range(BATCH):
                path = images[n % len(images)]
                key = f"incoming/unlabeled/{DATASET}/b{batch}-{n}-{path.name}"
                data = path.read_bytes()
                s3.put_object(Bucket=BUCKET, Key=key, Body=data)
                records.append(sqs_record(key, len(data), n))
                n += 1
            start = time.perf_counter()
            response = handler.lambda_handler({"Records": records}, LambdaContext())
            wall = time.perf_counter() - start
            if response["batchItemFailures"]:
                raise RuntimeError(f"batch {batch} had failures: {response}")
            if batch:  # the first batch loads the model (cold)
                walls.append(wall)
    per_batch = statistics.median(walls)
    per_instance = BATCH / per_batch
    instances = args.instances or int(template_default("DropToLabelConcurrency"))
    sys.stdout.flush()
    os.dup2(result_fd, 1)
    print(
        json.dumps(
            {
                "model_file": json.loads((args.model / "model.json").read_text())["model_file"],
                "batch_size": BATCH,
                "batches": len(walls),
                "batch_p50_s": round(per_batch, 4),
                "images_per_s_per_instance": round(per_instance, 1),
                "at_volume": {
                    "images": args.total,
                    "instances": instances,
                    "images_per_s": round(per_instance * instances, 1),
                    "minutes": round(args.total / (per_instance * instances) / 60, 1),
                    "api_instances_kept": "InferenceReservedConcurrency - DropToLabelConcurrency "
                    "(or the account's unreserved pool when none is reserved)",
                },
                "images": str(args.images),
                "cpu_cores": 1,
                "s3": "moto, in-process (no network round trips)",
                "load_average_1m": round(os.getloadavg()[0], 2),
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
