"""Test-side helpers for sharded manifest versions on moto: a version's CSVs, its images and its
``shards.json`` (planned by ``medimage.core.shards`` as the split plans it), and reading a shard back."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from typing import Any

from medimage.core.manifests import CSV_FIELDS, read_csv
from medimage.core.presets import SPLITS, get_preset
from medimage.core.shards import SHARD_PLAN, plan_shards
from medimage.core.tfrecord import read_records
from medimage.local.synthetic import generate

DATASET = "chestxray2017"


def put_sharded_version(
    s3: Any, bucket: str, version: str, shard_bytes: int = 3000, per_class: int = 8, seed: int = 5
) -> list[dict[str, Any]]:
    """Synthetic images in the bucket, a CSV per split (by key, as the split writes them) and the version's
    shard plan; returns the plan."""
    preset = get_preset(DATASET)
    rows: dict[str, list[list[str]]] = {split: [] for split in SPLITS}
    sizes: dict[str, list[int]] = {split: [] for split in SPLITS}
    files = generate(preset, per_class=per_class, size=24, seed=seed)
    for i, f in enumerate(sorted(files, key=lambda f: f.filename)):
        key = f"incoming/labeled/{DATASET}/{f.folder}/{f.filename}"
        s3.put_object(Bucket=bucket, Key=key, Body=f.data)
        split = SPLITS[i % len(SPLITS)]
        rows[split].append([key, f.label, hashlib.sha256(f.data).hexdigest(), ""])
        sizes[split].append(len(f.data))
    prefix = manifest_prefix(version)
    plan = []
    for split in SPLITS:
        order = sorted(range(len(rows[split])), key=lambda k: rows[split][k][0])
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(CSV_FIELDS)
        writer.writerows(rows[split][k] for k in order)
        s3.put_object(Bucket=bucket, Key=f"{prefix}{split}.csv", Body=out.getvalue().encode())
        manifest = [
            {"prefix": f"s3://{bucket}/"},
            f"{prefix}{split}.csv",
            *(rows[split][k][0] for k in order),
        ]
        s3.put_object(Bucket=bucket, Key=f"{prefix}{split}.manifest", Body=json.dumps(manifest).encode())
        plan += [
            s.to_dict() for s in plan_shards(prefix, split, [sizes[split][k] for k in order], shard_bytes)
        ]
    s3.put_object(Bucket=bucket, Key=f"{prefix}{SHARD_PLAN}", Body=json.dumps(plan).encode())
    return plan


def manifest_prefix(version: str) -> str:
    return f"manifests/{DATASET}/{version}/"


def csv_rows(s3: Any, bucket: str, version: str, split: str) -> list[dict[str, str]]:
    body = s3.get_object(Bucket=bucket, Key=f"{manifest_prefix(version)}{split}.csv")["Body"].read()
    return read_csv(body.decode("utf-8"))


def shard_records(data: bytes) -> list[bytes]:
    """The serialized examples of a TFRecord file (checksums checked)."""
    return list(read_records(io.BytesIO(data)))
