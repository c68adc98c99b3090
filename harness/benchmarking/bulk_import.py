"""The bulk import at scale on the local stack, as `medimage up` runs it: an interrupted import, its
resumption, a rerun that finds everything there and, when asked, the commit's training on all of it.

The stack is ``LocalAws`` in-process with its pollers started (``start_pollers``: the threads `medimage up`
runs, so annotate catalogues each copy as it lands, and a commit's split starts the training execution);
moto's interpreter runs ``statemachine/bulk_import.asl.json`` in the template's batches
(``medimage.local.moto_map``). The source tree holds ``n`` small, valid synthetic X-rays (32 px JPEGs),
spread over the preset's label folders.

1. The first import is stopped (``StopExecution``) once about ``interrupt_share`` of the objects are there;
   the copies already running finish, and the count settles.
2. A second import copies only what is missing (``copied_twice`` counts objects copied by both: 0).
3. A third finds everything there (``rerun_skipped``).
With ``train``, the second import commits: the split writes a manifest version of every catalogued image and
the training execution trains on it (the local SageMaker runs train.py); the result says how many images
the manifest holds and how the execution ended.
"""

from __future__ import annotations

import json
import math
import threading
import time
from typing import Any

DATASET = "chestxray2017"
SOURCE = "bulk-bench-source"
PREFIX = "export/"


class NoTraining:
    """The local SageMaker's trainer when the run does not train: the job fails at once, as if refused."""

    ok, seconds, metrics, failure_reason = False, 0.0, {}, "not trained in this run"

    def __call__(self, *args: Any) -> Any:
        return self


def put_source_tree(s3: Any, n: int) -> int:
    from medimage.core.presets import get_preset
    from medimage.local.synthetic import generate

    preset = get_preset(DATASET)
    files = generate(preset, per_class=math.ceil(n / len(preset.classes)), size=32, seed=11)[:n]
    s3.create_bucket(Bucket=SOURCE)
    for f in files:
        s3.put_object(Bucket=SOURCE, Key=f"{PREFIX}{f.folder}/{f.filename}", Body=f.data)
    return len(files)


def count_imported(s3: Any, bucket: str) -> int:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"incoming/labeled/{DATASET}/")
    return sum(1 for page in pages for o in page.get("Contents", []) if not o["Key"].endswith("/_commit"))


def settle(s3: Any, bucket: str, quiet_s: float = 3.0) -> int:
    """The number of imported objects once it has not changed for ``quiet_s``."""
    last, since = -1, time.monotonic()
    while True:
        now = count_imported(s3, bucket)
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return now
        time.sleep(0.5)


def run_import(sfn: Any, machine: str, commit: bool) -> tuple[str, float, dict[str, Any]]:
    from medimage.ops import bulk_import as bulk

    start = time.perf_counter()
    arn = bulk.start(sfn, machine, bulk.Source(SOURCE, PREFIX), DATASET, commit=commit)
    described = bulk.wait(sfn, arn, poll_s=0.5)
    return described["status"], time.perf_counter() - start, json.loads(described.get("output") or "{}")


def interrupted_import(s3: Any, sfn: Any, machine: str, bucket: str, stop_at: int) -> dict[str, Any]:
    from medimage.ops import bulk_import as bulk

    start = time.perf_counter()
    arn = bulk.start(sfn, machine, bulk.Source(SOURCE, PREFIX), DATASET, commit=False)
    while count_imported(s3, bucket) < stop_at:
        if sfn.describe_execution(executionArn=arn)["status"] != "RUNNING":
            break
        time.sleep(0.5)
    sfn.stop_execution(executionArn=arn, error="Interrupted", cause="stopped by the benchmark")
    stopped_after = time.perf_counter() - start
    there = settle(s3, bucket)
    return {
        "status": sfn.describe_execution(executionArn=arn)["status"],
        "stopped_after_s": round(stopped_after, 1),
        "copied": there,
        "seconds": round(time.perf_counter() - start, 1),
    }


def wait_for_training(sfn: Any, machine: str, timeout_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        executions = sfn.list_executions(stateMachineArn=machine)["executions"]
        ended = [e for e in executions if e["status"] != "RUNNING"]
        if executions and len(ended) == len(executions):
            described = sfn.describe_execution(executionArn=executions[0]["executionArn"])
            return {"status": described["status"], "error": described.get("error")}
        time.sleep(2)
    return {"status": "TIMED_OUT_WAITING"}


def manifest_images(s3: Any, bucket: str) -> dict[str, Any]:
    from medimage.core import layout

    latest = json.loads(s3.get_object(Bucket=bucket, Key=layout.latest_manifest_key(DATASET))["Body"].read())
    prefix = layout.manifest_prefix(DATASET, latest["version"])
    stats = json.loads(s3.get_object(Bucket=bucket, Key=f"{prefix}stats.json")["Body"].read())
    return {"version": latest["version"], "images": stats.get("images"), "input": stats.get("input")}


def template_batch_size() -> int:
    from pathlib import Path

    from medimage.template_file import load_template

    template = load_template(Path(__file__).resolve().parents[2] / "template.yaml")
    return int(template["Parameters"]["BulkImportBatchSize"]["Default"])


def bulk_import_benchmark(
    n: int, train: bool = False, interrupt_share: float = 0.4, train_timeout_s: float = 3600
) -> dict[str, Any]:
    import boto3

    from medimage.local.account import REGION
    from medimage.local.environment import LocalAws

    parameters = {"BulkImportSourceBuckets": SOURCE, "TrainingEpochs": "1", "MinNewImages": "1"}
    stop = threading.Event()
    with LocalAws(parameters=parameters, concurrent=True).running(
        trainer=None if train else NoTraining()
    ) as env:
        s3 = boto3.client("s3", region_name=REGION)
        sfn = boto3.client("stepfunctions", region_name=REGION)
        objects = put_source_tree(s3, n)
        threads = env.start_pollers(stop)
        try:
            machine = env.refs["BulkImportStateMachine"]
            first = interrupted_import(s3, sfn, machine, env.bucket, int(objects * interrupt_share))
            status, seconds, second = run_import(sfn, machine, commit=train)
            rerun_status, rerun_seconds, third = run_import(sfn, machine, commit=False)
            out: dict[str, Any] = {
                "objects": objects,
                "seconds": round(first["seconds"] + seconds, 1),
                "copied": first["copied"] + int(second.get("copied") or 0),
                "resumed_skipped": second.get("skipped"),
                "interrupted": first,
                "resumed": {
                    "status": status,
                    "seconds": round(seconds, 1),
                    "copied": second.get("copied"),
                    "skipped": second.get("skipped"),
                    "failed": second.get("failed"),
                    "committed": second.get("committed"),
                },
                "copied_twice": first["copied"] + int(second.get("copied") or 0) - objects,
                "rerun": {
                    "status": rerun_status,
                    "seconds": round(rerun_seconds, 1),
                    "copied": third.get("copied"),
                    "skipped": third.get("skipped"),
                },
                "batch_size": template_batch_size(),
            }
            if train:
                started = time.perf_counter()
                training = wait_for_training(sfn, env.refs["TrainingStateMachine"], train_timeout_s)
                out["training"] = {
                    **training,
                    "seconds_after_import": round(time.perf_counter() - started, 1),
                    "manifest": manifest_images(s3, env.bucket),
                }
            return out
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=10)
