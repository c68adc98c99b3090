"""Benchmark: annotate throughput and split time/memory on the emulated AWS (moto). Prints JSON.

    .venv/bin/python benchmarks/ingest_bench.py [--images N] [--split-sizes 2000,5000,20000]

Annotate: N images (real ChestXRay2017 224px JPEGs where ../shared/data has them, synthetic 224px
otherwise) uploaded and annotated by the real handler through S3 -> SQS; the time of each part is
measured so "the image read dominates" can be checked. Split: a catalog of K records, then one commit,
each size in a fresh process so its peak RSS is its own (the emulated AWS lives in that process too,
so the RSS includes moto's copy of the catalog: an upper bound for the Lambda's own memory).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import sys
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

from medimage.core.label_tree import files_by_label

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MEDIMAGE_SHARED_DATA", REPO.parent / "shared" / "data"))


def _images(n: int) -> tuple[str, list[tuple[str, str, bytes]]]:
    root = SHARED / "chestxray2017-224-train"
    if root.is_dir():
        by_label = files_by_label(root)
        paths = by_label["NORMAL"][: n // 2] + by_label["PNEUMONIA"][: n - n // 2]
        return "chestxray2017-224-train", [(p.parent.name, p.name, p.read_bytes()) for p in paths]
    from medimage.core.presets import get_preset
    from medimage.local.synthetic import generate

    files = generate(get_preset("chestxray2017"), per_class=n // 3 + 1, size=224)[:n]
    return "synthetic-224", [(f.folder, f.filename, f.data) for f in files]


def bench_annotate(n: int) -> dict:
    import boto3
    from moto import mock_aws

    import medimage.services.annotate as annotate_mod
    from medimage.local.environment import LocalAws

    timings: dict[str, float] = defaultdict(float)

    def timed(name, fn):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                timings[name] += time.perf_counter() - start

        return wrapper

    source, images = _images(n)
    with mock_aws():
        env = LocalAws(env_overrides={"POWERTOOLS_LOG_LEVEL": "WARNING"}).create()
        s3 = boto3.client("s3")
        for folder, name, data in images:
            s3.put_object(Bucket=env.bucket, Key=f"incoming/labeled/chestxray2017/{folder}/{name}", Body=data)
        from medimage.adapters.catalog import DynamoCatalog
        from medimage.adapters.s3 import S3ObjectStore

        originals = (S3ObjectStore.read, annotate_mod.inspect_image, DynamoCatalog.record_image)
        S3ObjectStore.read = timed("s3_get_object", S3ObjectStore.read)
        annotate_mod.inspect_image = timed("decode_and_validate", annotate_mod.inspect_image)
        DynamoCatalog.record_image = timed("catalog_write", DynamoCatalog.record_image)
        try:
            start = time.perf_counter()
            report = env.pump()
            total = time.perf_counter() - start
        finally:
            (S3ObjectStore.read, annotate_mod.inspect_image, DynamoCatalog.record_image) = originals
    image_read = timings["s3_get_object"] + timings["decode_and_validate"]
    return {
        "images": len(images),
        "source": source,
        "failed": report.failed_messages,
        "wall_s": round(total, 3),
        "images_per_s": round(len(images) / total, 1),
        "per_image_ms": {k: round(v / len(images) * 1000, 3) for k, v in sorted(timings.items())}
        | {"total": round(total / len(images) * 1000, 3)},
        "image_read_share": round(image_read / total, 3),
        "note": "moto S3/SQS/DynamoDB calls run in-process; on AWS the network adds to each call",
    }


def _split_worker(k: int, queue: multiprocessing.Queue) -> None:
    import boto3
    from moto import mock_aws

    from medimage.adapters.catalog import DynamoCatalog, to_dynamo_item
    from medimage.adapters.s3 import S3ObjectStore
    from medimage.adapters.workflow import StepFunctionsWorkflow
    from medimage.core.catalog import CatalogRecord
    from medimage.core.presets import get_preset
    from medimage.core.splits import assign_split, group_of
    from medimage.local.environment import LocalAws
    from medimage.services.datasets import DatasetResolver
    from medimage.services.split import Splitter

    with mock_aws():
        env = LocalAws().create()
        preset = get_preset("chestxray2017")
        db = boto3.client("dynamodb")
        now = datetime.now(UTC).isoformat()
        labels = preset.classes
        batch = []
        for i in range(k):
            sha = f"{i:064x}"
            patient = f"person{i // 3}"
            group = group_of(patient, sha)
            label = labels[i % 3]
            rec = CatalogRecord(
                "chestxray2017",
                sha,
                f"incoming/labeled/chestxray2017/X/person{i // 3}_{i}.jpeg",
                label,
                patient,
                group,
                assign_split("chestxray2017", group, preset.split_ratios),
                224,
                224,
                "RGB",
                "jpeg",
                20000,
                now,
            )
            batch.append({"PutRequest": {"Item": to_dynamo_item(rec)}})
            if len(batch) == 25:
                db.batch_write_item(RequestItems={env.table: batch})
                batch = []
        if batch:
            db.batch_write_item(RequestItems={env.table: batch})
        splitter = Splitter(
            S3ObjectStore(env.bucket),
            DynamoCatalog(env.table),
            DatasetResolver(),
            StepFunctionsWorkflow(env.state_machine_arn),
            min_new_images=1,
        )
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        start = time.perf_counter()
        result = splitter.commit("chestxray2017")
        wall = time.perf_counter() - start
        queue.put(
            {
                "catalogued": k,
                "status": result.status,
                "split_s": round(wall, 3),
                "process_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                "process_rss_before_split_mb": round(rss_before / 1024, 1),
            }
        )


def bench_split(sizes: list[int]) -> list[dict]:
    ctx = multiprocessing.get_context("spawn")
    results = []
    for k in sizes:
        queue = ctx.Queue()
        proc = ctx.Process(target=_split_worker, args=(k, queue))
        proc.start()
        results.append(queue.get())
        proc.join()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--split-sizes", default="2000,5000,20000")
    args = parser.parse_args()
    sizes = [int(s) for s in args.split_sizes.split(",") if s]
    # stdout is for the one JSON result: the handlers print their CloudWatch metric lines (EMF) to
    # stdout, here and in the split processes, so file descriptor 1 points at stderr until the end.
    sys.stdout.flush()
    result_stream = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    out = {
        "benchmark": "ingest",
        "machine": f"{os.cpu_count()} cores",
        "python": sys.version.split()[0],
        "annotate": bench_annotate(args.images),
        "split": bench_split(sizes),
        "targets": {"split_20000_s": 20, "split_20000_mb": 256},
    }
    sys.stdout.flush()
    print(json.dumps(out, indent=2), file=result_stream, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
