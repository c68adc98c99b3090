"""Manifest plans: deterministic versions, per-split counts, new-image detection, SageMaker format."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from medimage.core.catalog import CatalogRecord
from medimage.core.manifests import plan_manifest, read_csv, to_csv, to_sagemaker_manifest

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def record(i: int, label: str, split: str, at: str = "2026-11-25T10:00:00+00:00") -> CatalogRecord:
    return CatalogRecord(
        dataset="ds",
        sha256=f"{i:064x}",
        key=f"incoming/labeled/ds/{label}/{i}.jpeg",
        label=label,
        patient_id=f"p{i}",
        group=f"patient:p{i}",
        split=split,
        width=32,
        height=32,
        mode="L",
        format="jpeg",
        size_bytes=100,
        catalogued_at=at,
    )


def test_plan_counts_per_split_and_class_and_new_images():
    records = [
        record(1, "a", "train"),
        record(2, "b", "train"),
        record(3, "a", "test"),
        record(4, "b", "val"),
    ]
    plan = plan_manifest(
        "ds", ["a", "b"], records, {f"{1:064x}"}, duplicates=2, quarantined={"truncated": 1}, now=NOW
    )
    assert plan.new_images == 3
    assert plan.stats["counts"] == {
        "train": {"a": 1, "b": 1},
        "val": {"a": 0, "b": 1},
        "test": {"a": 1, "b": 0},
    }
    assert plan.stats["totals"] == {"train": 2, "val": 1, "test": 1}
    assert plan.stats["duplicates"] == 2
    assert plan.stats["quarantined"] == {"truncated": 1}


def test_version_is_a_function_of_the_content_not_of_the_clock():
    records = [
        record(1, "a", "train", "2026-11-25T10:00:00+00:00"),
        record(2, "a", "val", "2026-11-25T11:30:00+00:00"),
    ]
    first = plan_manifest("ds", ["a"], records, set(), 0, {}, NOW).version
    later = plan_manifest(
        "ds", ["a"], list(reversed(records)), set(), 0, {}, datetime(2030, 1, 1, tzinfo=UTC)
    )
    assert first == later.version
    assert first.startswith("20261125T113000Z-")
    other = plan_manifest("ds", ["a"], records[:1], set(), 0, {}, NOW).version
    assert other != first


def test_csv_round_trip():
    rows = [record(1, "a", "train"), record(2, "b", "train")]
    parsed = read_csv(to_csv(rows))
    assert [(r["key"], r["label"], r["patient_id"]) for r in parsed] == [
        ("incoming/labeled/ds/a/1.jpeg", "a", "p1"),
        ("incoming/labeled/ds/b/2.jpeg", "b", "p2"),
    ]


def test_sagemaker_manifest_lists_prefix_csv_then_images():
    entries = json.loads(to_sagemaker_manifest("bkt", "manifests/ds/v/train.csv", [record(1, "a", "train")]))
    assert entries == [{"prefix": "s3://bkt/"}, "manifests/ds/v/train.csv", "incoming/labeled/ds/a/1.jpeg"]
