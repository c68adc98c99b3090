"""Manifest versions: train/val/test lists built from the catalog, and their statistics.

Each split is written twice: ``<split>.csv`` (key, label, sha256, patient_id) that the trainer reads,
and ``<split>.manifest``, a SageMaker ``ManifestFile`` listing the CSV and every image key, so a
training channel of S3DataType ManifestFile receives exactly that split.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from medimage.core.catalog import CatalogRecord
from medimage.core.presets import SPLITS
from medimage.core.shortcuts import audit_shapes

CSV_FIELDS = ("key", "label", "sha256", "patient_id")
CHANNEL_OF_SPLIT = {"train": "train", "val": "validation", "test": "test"}


@dataclass(frozen=True)
class ManifestPlan:
    version: str
    rows: dict[str, list[CatalogRecord]]
    stats: dict[str, Any]
    new_images: int


def version_for(records: list[CatalogRecord]) -> str:
    """Sortable by data time and a pure function of the content (``20261125T190500Z-1a2b3c4d``), so a
    retried commit of the same catalog yields the same version and the same execution name."""
    digest = hashlib.sha256("\n".join(sorted(r.sha256 for r in records)).encode()).hexdigest()[:8]
    newest = max(
        (datetime.fromisoformat(r.catalogued_at) for r in records), default=datetime(1970, 1, 1, tzinfo=UTC)
    )
    return f"{newest.astimezone(UTC):%Y%m%dT%H%M%SZ}-{digest}"


def plan_manifest(
    dataset: str,
    classes: Iterable[str],
    records: Iterable[CatalogRecord],
    previous_shas: set[str],
    duplicates: int,
    quarantined: dict[str, int],
    now: datetime,
) -> ManifestPlan:
    ordered = sorted(records, key=lambda r: r.key)
    rows: dict[str, list[CatalogRecord]] = {split: [] for split in SPLITS}
    for record in ordered:
        rows[record.split].append(record)
    class_list = list(classes)
    counts = {
        split: {label: Counter(r.label for r in split_rows).get(label, 0) for label in class_list}
        for split, split_rows in rows.items()
    }
    new = sum(1 for r in ordered if r.sha256 not in previous_shas)
    stats = {
        "dataset": dataset,
        "classes": class_list,
        "images": len(ordered),
        "new_images": new,
        "patients": len({r.group for r in ordered if r.group.startswith("patient:")}),
        "counts": counts,
        "totals": {split: len(split_rows) for split, split_rows in rows.items()},
        "duplicates": duplicates,
        "quarantined": dict(sorted(quarantined.items())),
        # Image shape as a label shortcut (aspect ratio, size): see medimage.core.shortcuts.
        "shortcut_audit": audit_shapes(
            [r.label for r in ordered], [r.width for r in ordered], [r.height for r in ordered], class_list
        ),
    }
    version = version_for(ordered)
    stats["version"] = version
    stats["created_at"] = now.astimezone(UTC).isoformat()
    return ManifestPlan(version=version, rows=rows, stats=stats, new_images=new)


def to_csv(records: list[CatalogRecord]) -> str:
    return csv_header() + csv_lines(csv_row(r) for r in records)


CsvRow = tuple[str, str, str, str]  # key, label, sha256, patient_id ("" when none)


def csv_row(record: CatalogRecord) -> CsvRow:
    return (record.key, record.label, record.sha256, record.patient_id or "")


def csv_header() -> str:
    return csv_lines([CSV_FIELDS])


def csv_lines(rows: Iterable[tuple[str, ...]]) -> str:
    """CSV lines of ``rows``: a manifest CSV is its header, then these pieces one after another."""
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue()


def read_csv(text: str) -> list[dict[str, str]]:
    return list(iter_csv(io.StringIO(text)))


def iter_csv(lines: Iterable[str]) -> Iterator[dict[str, str]]:
    """The rows of a manifest CSV given line by line (ends kept), one at a time."""
    reader = csv.DictReader(lines)
    missing = set(CSV_FIELDS) - set(reader.fieldnames or [])
    if missing:
        raise ValueError(f"manifest CSV lacks columns: {sorted(missing)}")
    yield from reader


def to_sagemaker_manifest(bucket: str, csv_key: str, records: list[CatalogRecord]) -> str:
    """A SageMaker ManifestFile: a prefix, then keys relative to it (the CSV first)."""
    return sagemaker_manifest_head(bucket, csv_key) + sagemaker_manifest_keys([r.key for r in records]) + "]"


def sagemaker_manifest_head(bucket: str, csv_key: str) -> str:
    """The ManifestFile up to its keys; then ``sagemaker_manifest_keys`` pieces, then ``]``: the same
    text as ``json.dumps`` of the whole list, written as it goes."""
    entries: list[Any] = [{"prefix": f"s3://{bucket}/"}, csv_key]
    return json.dumps(entries)[:-1]


def sagemaker_manifest_keys(keys: list[str]) -> str:
    return ", " + json.dumps(keys)[1:-1] if keys else ""
