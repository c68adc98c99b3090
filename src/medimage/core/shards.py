"""Shards: a large manifest version's channels packed into TFRecord files of about ``shard_bytes`` each.

A shard is a run of consecutive rows of a split's CSV (its order: by key), cut where the images' sizes
add up to ``shard_bytes``; the plan (``shards.json`` beside the CSVs) lists each run, so packing a shard
is a pure function of the manifest version and its index, and any shard can be packed again alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

from medimage.core.manifests import CHANNEL_OF_SPLIT

# SageMaker's advice for many small files: pack them into objects of about 100-200 MB.
DEFAULT_SHARD_BYTES = 150 * 1024 * 1024
# From this many images a manifest version is trained from shards (the template's ShardThreshold).
DEFAULT_SHARD_THRESHOLD = 50_000
SHARD_PLAN = "shards.json"
# The features of a packed image (``core.tfrecord.image_record``); the trainer parses exactly these.
IMAGE_FEATURES = ("image", "label", "key", "sha256")


@dataclass(frozen=True)
class ShardSpec:
    split: str
    channel: str
    index: int
    first_row: int  # 0-based, after the CSV header
    rows: int
    bytes: int
    key: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ShardSpec:
        return cls(**{name: data[name] for name in cls.__dataclass_fields__})


def channel_prefix(manifest_prefix: str, split: str) -> str:
    """Where a channel's shards live: the S3Prefix a training channel reads."""
    return f"{manifest_prefix}shards/{CHANNEL_OF_SPLIT[split]}/"


def plan_shards(
    manifest_prefix: str, split: str, sizes: Iterable[int], shard_bytes: int
) -> Iterator[ShardSpec]:
    """Runs of rows whose image sizes add up to about ``shard_bytes`` (at least one row each)."""
    channel = CHANNEL_OF_SPLIT[split]
    index = first = rows = total = 0
    for size in sizes:
        if rows and total + size > shard_bytes:
            yield _spec(manifest_prefix, split, channel, index, first, rows, total)
            index, first, rows, total = index + 1, first + rows, 0, 0
        rows += 1
        total += size
    if rows:
        yield _spec(manifest_prefix, split, channel, index, first, rows, total)


def _spec(prefix: str, split: str, channel: str, index: int, first: int, rows: int, total: int) -> ShardSpec:
    key = f"{channel_prefix(prefix, split)}{channel}-{index:05d}.tfrecord"
    return ShardSpec(split, channel, index, first, rows, total, key)
