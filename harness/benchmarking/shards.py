"""The shard benchmark (``benchmarks/scale_bench.py --shards N``): packing N synthetic JPEGs into TFRecord
shards with ``medimage.services.pack`` on an in-memory store (write throughput: the packer's own cost,
framing and checksums, with no network), then reading one channel through the trainer's ``tf.data`` path
as shards and as a CSV with its files on local disk (read throughput, images as bytes, not decoded).
On a local disk with a warm page cache the two read alike; what shards save on SageMaker is S3 requests
(``objects_per_channel``), which a local run cannot time."""

from __future__ import annotations

import csv
import hashlib
import io
import shutil
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from medimage.core.manifests import CSV_FIELDS
from medimage.core.presets import get_preset
from medimage.core.shards import plan_shards
from medimage.local.synthetic import generate
from medimage.services.pack import ShardPacker

DATASET = "chestxray2017"
PREFIX = f"manifests/{DATASET}/bench/"


class MemoryStore:
    """The object store calls the packer makes, on a dict."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def exists(self, key: str) -> bool:
        return key in self.objects

    def get_bytes(self, key: str) -> bytes | None:
        return self.objects.get(key)

    def read_lines(self, key: str) -> Iterator[str] | None:
        data = self.objects.get(key)
        return None if data is None else iter(data.decode("utf-8").splitlines(keepends=True))

    def start_upload(self, key: str, content_type: str = "") -> MemoryUpload:
        return MemoryUpload(self, key)


class MemoryUpload:
    def __init__(self, store: MemoryStore, key: str) -> None:
        self.store, self.key, self.buffer = store, key, bytearray()

    def write(self, data: bytes) -> None:
        self.buffer += data

    def finish(self) -> bool:
        self.store.objects[self.key] = bytes(self.buffer)
        return True

    def abort(self) -> None:
        self.buffer.clear()


def train_version(store: MemoryStore, n: int, size: int) -> list[dict[str, str]]:
    """``n`` synthetic JPEGs of ``size`` px in the store and a train CSV listing them (by key)."""
    preset = get_preset(DATASET)
    files = generate(preset, per_class=-(-n // len(preset.classes)), size=size, seed=11)[:n]
    rows = []
    for f in files:
        key = f"incoming/labeled/{DATASET}/{f.folder}/{f.filename}"
        store.objects[key] = f.data
        rows.append(
            {"key": key, "label": f.label, "sha256": hashlib.sha256(f.data).hexdigest(), "patient_id": ""}
        )
    rows.sort(key=lambda r: r["key"])
    out = io.StringIO()
    writer = csv.DictWriter(out, CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    store.objects[f"{PREFIX}train.csv"] = out.getvalue().encode()
    return rows


def _read_seconds(dataset: Any, n: int) -> float:
    start = time.perf_counter()
    count = sum(1 for _ in dataset.as_numpy_iterator())
    seconds = time.perf_counter() - start
    assert count == n, (count, n)
    return seconds


def _rate(n: int, seconds: list[float]) -> dict[str, Any]:
    """Images/s of the median run (and of the fastest and slowest) of ``n`` images."""
    ordered = sorted(seconds)
    return {
        "images_per_s": round(n / statistics.median(ordered), 1),
        "range_images_per_s": [round(n / ordered[-1], 1), round(n / ordered[0], 1)],
        "runs": len(ordered),
    }


def shard_benchmark(n: int, size: int = 224, shard_mb: float = 8.0, repeats: int = 5) -> dict[str, Any]:
    """Write and read throughput of one train channel of ``n`` images; each figure is the median of
    ``repeats`` runs (the reads alternate between shards and files, so that both see the same load)."""
    store = MemoryStore()
    rows = train_version(store, n, size)
    sizes = [len(store.objects[r["key"]]) for r in rows]
    plan = list(plan_shards(PREFIX, "train", sizes, int(shard_mb * 2**20)))
    packer = ShardPacker(store)  # type: ignore[arg-type]
    write_s: list[float] = []
    for _ in range(repeats):
        for spec in plan:
            store.objects.pop(spec.key, None)
        start = time.perf_counter()
        written = sum(packer.pack(PREFIX, spec).bytes for spec in plan)
        write_s.append(time.perf_counter() - start)
    work = Path(tempfile.mkdtemp(prefix="shard-bench-"))
    try:
        shards_dir, files_dir = work / "shards", work / "files"
        shards_dir.mkdir()
        for spec in plan:
            (shards_dir / spec.key.rsplit("/", 1)[1]).write_bytes(store.objects[spec.key])
        (files_dir / "manifests").mkdir(parents=True)
        (files_dir / "manifests" / "train.csv").write_bytes(store.objects[f"{PREFIX}train.csv"])
        for r in rows:
            (files_dir / r["key"]).parent.mkdir(parents=True, exist_ok=True)
            (files_dir / r["key"]).write_bytes(store.objects[r["key"]])
        from medimage.training.data import channel_records

        # One pass each to warm TensorFlow and the page cache, then the timed passes, alternating.
        timed: dict[str, list[float]] = {"shards": [], "files": []}
        for attempt in range(repeats + 1):
            for name, folder in (("shards", shards_dir), ("files", files_dir)):
                seconds = _read_seconds(channel_records("train", folder), n)
                if attempt:
                    timed[name].append(seconds)
        read = {name: _rate(n, seconds) for name, seconds in timed.items()}
        ratios = [f / s for s, f in zip(timed["shards"], timed["files"], strict=True)]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    image_mb = sum(sizes) / 2**20
    return {
        "images": n,
        "image_px": size,
        "image_mb": round(image_mb, 1),
        "shards": len(plan),
        "shard_target_mb": shard_mb,
        "write": {
            **_rate(n, write_s),
            "mb_per_s": round(written / 2**20 / statistics.median(write_s), 1),
            "shard_bytes_per_image_byte": round(written / sum(sizes), 4),
        },
        "read": read,
        # What a job fetches from S3 for the channel: every image and the CSV, or the shards.
        "objects_per_channel": {"files": n + 1, "shards": len(plan)},
        # The median of the paired runs' ratios (files' seconds / shards' seconds).
        "read_speedup_shards_over_files": round(statistics.median(ratios), 2),
    }
