"""Catalogs of any size for the scale benchmark, made up on the fly so they cost no memory of their own.

Records come in sha256 order (as DynamoDB pages a dataset's partition), three images a patient, split by
the preset's real assignment; the store keeps only a digest of what is written to it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from medimage.core.catalog import CatalogPage, CatalogRecord
from medimage.core.presets import get_preset
from medimage.core.splits import assign_split, group_of

DATASET = "chestxray2017"
# About what one 1 MB DynamoDB Query page holds of the catalog's ~330-byte items.
PAGE_RECORDS = 3000
START = datetime(2026, 1, 1, tzinfo=UTC)


def synthetic_records(n: int, dataset: str = DATASET) -> Iterator[CatalogRecord]:
    preset = get_preset("chestxray2017")
    for i in range(n):
        # sorted by i (the first 8 hex digits), the rest as random as a real digest
        sha = f"{i:08x}" + hashlib.sha256(i.to_bytes(8, "big")).hexdigest()[8:]
        patient = f"person{(i * 7919) % (n // 3 + 1)}"
        group = group_of(patient, sha)
        label = preset.classes[i % 3]
        yield CatalogRecord(
            dataset=dataset,
            sha256=sha,
            key=f"incoming/labeled/{dataset}/{label.upper()}/{patient}_virus_{i}.jpeg",
            label=label,
            patient_id=patient,
            group=group,
            split=assign_split(dataset, group, preset.split_ratios),
            width=1000 + i % 900,
            height=800 + i % 700,
            mode="L",
            format="jpeg",
            size_bytes=150_000,
            catalogued_at=(START + timedelta(seconds=i)).isoformat(),
        )


class SyntheticCatalog:
    """The catalog port over ``synthetic_records``: pages made as they are read."""

    def __init__(self, n: int) -> None:
        self.n = n

    def pages(self, dataset: str) -> Iterator[CatalogPage]:
        page: list[CatalogRecord] = []
        for record in synthetic_records(self.n, dataset):
            page.append(record)
            if len(page) == PAGE_RECORDS:
                yield CatalogPage(page, 0, {})
                page = []
        yield CatalogPage(page, 0, {"truncated": 1})


class DigestUpload:
    def __init__(self, store: DigestStore, key: str) -> None:
        self.store, self.key, self.digest, self.size = store, key, hashlib.md5(), 0

    def write(self, data: bytes) -> None:
        self.digest.update(data)
        self.size += len(data)

    def finish(self) -> bool:
        self.store.objects[self.key] = (self.size, self.digest.hexdigest())
        return True

    def abort(self) -> None:
        pass


class DigestStore:
    """An object store that remembers each object's size and MD5 only (small JSON documents in full)."""

    bucket = "scale-bench"

    def __init__(self) -> None:
        self.objects: dict[str, Any] = {}

    def exists(self, key: str) -> bool:
        return key in self.objects

    def get_json(self, key: str) -> Any | None:
        return self.objects.get(key)

    def get_json_with_etag(self, key: str) -> tuple[Any | None, str | None]:
        value = self.objects.get(key)
        return (value, "etag") if value is not None else (None, None)

    def put_json_if(self, key: str, value: Any, etag: str | None) -> bool:
        self.objects[key] = value
        return True

    def read_lines(self, key: str) -> Iterator[str] | None:
        return None

    def start_upload(self, key: str, content_type: str = "") -> DigestUpload:
        return DigestUpload(self, key)
