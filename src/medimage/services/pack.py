"""Pack one shard of a manifest version: its rows' images, as uploaded, into one TFRecord file.

A step of the training workflow runs this once per entry of ``shards.json`` (a Distributed Map), before
a sharded version trains. The shard is written only if absent, so a retried or repeated pack is a no-op;
an image the manifest lists but the bucket no longer holds fails the shard with a stable code.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice
from typing import Any

from medimage.core.errors import MedimageError
from medimage.core.layout import MANIFESTS_PREFIX
from medimage.core.manifests import iter_csv
from medimage.core.shards import ShardSpec, channel_prefix
from medimage.core.tfrecord import image_record
from medimage.services.ports import ObjectStore

# Images read at once while a shard is packed (S3 GETs are latency-bound).
READERS = 16


class ShardSourceMissing(MedimageError):
    code = "shard_source_missing"


class ShardSourceInvalid(MedimageError):
    code = "shard_source_invalid"


class BadPackRequest(MedimageError):
    code = "bad_pack_request"


@dataclass(frozen=True)
class PackRequest:
    """One item of the workflow's packing step: ``{"bucket", "manifest_prefix", "shard"}``, the shard an
    entry of the version's ``shards.json``. Its key must lie in the version's own shard folder."""

    bucket: str
    manifest_prefix: str
    shard: ShardSpec

    @classmethod
    def from_event(cls, event: Any) -> PackRequest:
        if not isinstance(event, dict):
            raise BadPackRequest("the pack request must be a JSON object")
        try:
            bucket, prefix, shard = str(event["bucket"]), str(event["manifest_prefix"]), event["shard"]
            spec = ShardSpec.from_dict(shard)
        except KeyError as exc:
            raise BadPackRequest(f"the pack request lacks {exc}") from None
        except TypeError:
            raise BadPackRequest("the pack request's shard must be an entry of shards.json") from None
        if not bucket or not prefix.startswith(MANIFESTS_PREFIX) or not prefix.endswith("/"):
            raise BadPackRequest(f"manifest prefix {prefix!r} is not manifests/<dataset>/<version>/")
        try:
            folder = channel_prefix(prefix, spec.split)
        except KeyError:
            raise BadPackRequest(f"shard of unknown split {spec.split!r}") from None
        if not (spec.key.startswith(folder) and spec.key.endswith(".tfrecord")) or ".." in spec.key:
            raise BadPackRequest(f"shard key {spec.key!r} is not a .tfrecord file under {folder}")
        numbers = (spec.index, spec.first_row, spec.rows, spec.bytes)
        if not all(isinstance(n, int) and not isinstance(n, bool) for n in numbers):
            raise BadPackRequest(f"shard {spec.key!r}: index, first_row, rows and bytes must be integers")
        if spec.rows < 1 or spec.first_row < 0:
            raise BadPackRequest(f"shard {spec.key!r} plans {spec.rows} rows from row {spec.first_row}")
        return cls(bucket, prefix, spec)


@dataclass(frozen=True)
class PackResult:
    key: str
    status: str  # "written" | "exists"
    images: int
    bytes: int

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class ShardPacker:
    def __init__(self, store: ObjectStore, readers: int = READERS) -> None:
        self.store = store
        self.readers = readers

    def rows(self, manifest_prefix: str, spec: ShardSpec) -> Iterator[dict[str, str]]:
        lines = self.store.read_lines(f"{manifest_prefix}{spec.split}.csv")
        if lines is None:
            raise ShardSourceMissing(f"{manifest_prefix}{spec.split}.csv is missing")
        return islice(iter_csv(lines), spec.first_row, spec.first_row + spec.rows)

    def pack(self, manifest_prefix: str, spec: ShardSpec) -> PackResult:
        if self.store.exists(spec.key):
            return PackResult(spec.key, "exists", spec.rows, spec.bytes)
        try:
            rows = list(self.rows(manifest_prefix, spec))
        except ValueError as exc:
            raise ShardSourceInvalid(f"{manifest_prefix}{spec.split}.csv: {exc}") from None
        if len(rows) != spec.rows:
            raise ShardSourceMissing(f"{spec.key}: the CSV has {len(rows)} of the {spec.rows} rows planned")
        upload = self.store.start_upload(spec.key, "application/x-tfrecord")
        written = 0
        try:
            with ThreadPoolExecutor(self.readers) as pool:
                for row, data in zip(rows, pool.map(self._image, rows), strict=True):
                    record = image_record(data, row["label"], row["key"], row["sha256"])
                    upload.write(record)
                    written += len(record)
            upload.finish()
        except BaseException:
            upload.abort()
            raise
        return PackResult(spec.key, "written", len(rows), written)

    def _image(self, row: dict[str, str]) -> bytes:
        data = self.store.get_bytes(row["key"])
        if data is None:
            raise ShardSourceMissing(
                f"image {row['key']} is listed in the manifest but missing from the bucket"
            )
        return data
