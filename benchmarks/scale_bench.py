"""Benchmark: the split at scale, time and peak memory against the split function's limits. Prints JSON.

    .venv/bin/python benchmarks/scale_bench.py [--moto 20000,100000] [--memory 100000,1000000]
        [--shards 2000 [--shard-mb 8]]
        [--bulk-import 10000 [--bulk-import-train]]

Each run is a fresh process (so its peak RSS is its own) that builds a catalog and runs one commit:
``moto``: the real DynamoDB and S3 adapters on the emulated AWS (the RSS includes moto's copy of the
catalog and of the manifests written: an upper bound of the Lambda's own memory); ``memory``: a catalog
made up page by page as it is read and a store that keeps only digests, so the RSS is the split's own.
Limits read from template.yaml: the split function's MemorySize and Timeout.

``shards``: N synthetic 224 px JPEGs packed into TFRecord shards by ``medimage.services.pack`` on an
in-memory store (write: images/s and MB/s), then one channel read through the trainer's ``tf.data`` path
from the shards and from the CSV and its files (read: images/s); see ``harness/benchmarking/shards.py``.
``bulk_import``: N small synthetic X-rays in a folder-per-label tree of another bucket, imported by the
bulk-import state machine on the local stack with its pollers running, as `medimage up` runs it: a first
import stopped part-way, a second that copies only the rest (``resumed_skipped``), a third that skips all;
with ``--bulk-import-train`` the second commits and the run waits for the training on all of it (see
``harness/benchmarking/bulk_import.py``).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def _rss_now_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _disk_watch(directory: str) -> Any:
    """The largest the work directory grew while the split ran (sampled every 0.2 s)."""
    import threading

    peak = [0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.2):
            size = sum(p.stat().st_size for p in Path(directory).rglob("*") if p.is_file())
            peak[0] = max(peak[0], size)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    return stop, thread, peak


def _commit(splitter: Any, work: str) -> dict[str, Any]:
    rss_before = _rss_now_mb()
    stop, thread, disk = _disk_watch(work)
    start = time.perf_counter()
    result = splitter.commit("chestxray2017")
    seconds = time.perf_counter() - start
    stop.set()
    thread.join()
    return {
        "status": result.status,
        "seconds": round(seconds, 2),
        "peak_rss_mb": round(_peak_rss_mb(), 1),
        "rss_before_split_mb": round(rss_before, 1),
        "peak_work_dir_mb": round(disk[0] / 2**20, 1),
        "totals": result.stats.get("totals"),
    }


def _memory_worker(n: int, queue: Any) -> None:
    sys.path.insert(0, str(REPO))
    from harness.benchmarking.scale import DigestStore, SyntheticCatalog
    from medimage.services.datasets import DatasetResolver
    from medimage.services.split import Splitter

    work = tempfile.mkdtemp(prefix="scale-bench-")
    try:
        splitter = Splitter(DigestStore(), SyntheticCatalog(n), DatasetResolver(), None, 1, work_dir=work)
        queue.put({"images": n, "catalog": "memory", **_commit(splitter, work)})
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _moto_worker(n: int, queue: Any) -> None:
    sys.path.insert(0, str(REPO))
    import boto3
    from moto import mock_aws

    from harness.benchmarking.scale import synthetic_records
    from medimage.adapters.catalog import DynamoCatalog, to_dynamo_item
    from medimage.adapters.s3 import S3ObjectStore
    from medimage.local.environment import LocalAws
    from medimage.services.datasets import DatasetResolver
    from medimage.services.split import Splitter

    work = tempfile.mkdtemp(prefix="scale-bench-")
    try:
        with mock_aws():
            env = LocalAws().create()
            db = boto3.client("dynamodb")
            load_start = time.perf_counter()
            batch: list[dict[str, Any]] = []
            for record in synthetic_records(n):
                batch.append({"PutRequest": {"Item": to_dynamo_item(record)}})
                if len(batch) == 25:
                    db.batch_write_item(RequestItems={env.table: batch})
                    batch = []
            if batch:
                db.batch_write_item(RequestItems={env.table: batch})
            load_s = time.perf_counter() - load_start
            splitter = Splitter(
                S3ObjectStore(env.bucket), DynamoCatalog(env.table), DatasetResolver(), None, 1, work_dir=work
            )
            queue.put(
                {
                    "images": n,
                    "catalog": "moto",
                    "catalog_load_s": round(load_s, 1),
                    **_commit(splitter, work),
                }
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _shards_worker(n: int, shard_mb: float, queue: Any) -> None:
    sys.path.insert(0, str(REPO))
    from harness.benchmarking.shards import shard_benchmark

    queue.put(shard_benchmark(n, shard_mb=shard_mb))


def _bulk_import_worker(n: int, train: bool, queue: Any) -> None:
    sys.path.insert(0, str(REPO))
    from harness.benchmarking.bulk_import import bulk_import_benchmark
    from medimage.training.pretrained import PRETRAINED_DIR_ENV

    if not train:  # no training job: no ImageNet weights to stage
        os.environ[PRETRAINED_DIR_ENV] = str(Path(tempfile.mkdtemp(prefix="bulk-bench-")) / "none")
    queue.put(bulk_import_benchmark(n, train=train))


def _run(worker: Any, *args: Any) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=worker, args=(*args, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def split_limits() -> dict[str, Any]:
    from medimage.template_file import load_template

    props = load_template(REPO / "template.yaml")["Resources"]["SplitFunction"]["Properties"]
    return {
        "memory_mb": props["MemorySize"],
        "timeout_s": props["Timeout"],
        "ephemeral_storage_mb": props.get("EphemeralStorage", {}).get("Size", 512),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--moto", default="20000,100000", help="catalog sizes on moto (comma-separated)")
    parser.add_argument("--memory", default="100000,1000000", help="catalog sizes made up in memory")
    parser.add_argument("--shards", default="2000", help="images packed into shards and read back (0: none)")
    parser.add_argument("--shard-mb", type=float, default=8.0, help="target shard size of --shards, MB")
    parser.add_argument(
        "--bulk-import",
        type=int,
        default=10000,
        help="objects of the bulk-import run on the local stack (0: none)",
    )
    parser.add_argument(
        "--bulk-import-train",
        action="store_true",
        help="the resumed import commits, and the run waits for the training on every imported image",
    )
    args = parser.parse_args()
    runs = [(_moto_worker, int(n)) for n in args.moto.split(",") if n]
    runs += [(_memory_worker, int(n)) for n in args.memory.split(",") if n]
    sys.stdout.flush()
    result_stream = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # stdout is for the one JSON result
    split = [_run(worker, n) for worker, n in runs]
    shards = [_run(_shards_worker, int(n), args.shard_mb) for n in args.shards.split(",") if n and int(n)]
    bulk_import = (
        _run(_bulk_import_worker, args.bulk_import, args.bulk_import_train) if args.bulk_import > 0 else None
    )
    limits = split_limits()
    out = {
        "benchmark": "scale",
        "machine": f"{os.cpu_count()} cores",
        "python": sys.version.split()[0],
        "split_function_limits": limits,
        "split": split,
        "within_limits": all(
            r["seconds"] < limits["timeout_s"]
            and r["peak_rss_mb"] < limits["memory_mb"]
            and r["peak_work_dir_mb"] < limits["ephemeral_storage_mb"]
            for r in split
        ),
    }
    if shards:
        out["shards"] = shards
    out["cost_usd_per_million_images"] = costs_per_million(split)
    if bulk_import is not None:
        out["bulk_import"] = bulk_import
    print(json.dumps(out, indent=2), file=result_stream, flush=True)
    return 0


def costs_per_million(split: list[dict[str, Any]]) -> dict[str, Any]:
    """List-price cost of a million images, per stage and AWS service, with this run's split time."""
    sys.path.insert(0, str(REPO))
    from harness.benchmarking.costs import drop_to_label, function_memory, import_and_train
    from medimage.template_file import load_template

    memory = function_memory(load_template(REPO / "template.yaml"))
    largest = max(split, key=lambda r: r["images"], default=None)
    per_million = largest["seconds"] * 1e6 / largest["images"] if largest else None
    return {
        "import_and_train": import_and_train(1_000_000, memory, split_s_per_million=per_million),
        "drop_to_label": drop_to_label(1_000_000, memory),
        "prices": "US East list prices, harness/benchmarking/costs.py (Prices)",
    }


if __name__ == "__main__":
    sys.exit(main())
