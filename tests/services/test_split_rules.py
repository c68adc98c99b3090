"""Split's rules: one complete manifest version per batch of new images, written before training starts."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from fakes import FixedBacklog, InMemoryCatalog, InMemoryObjectStore, RecordingWorkflow

from medimage.core.catalog import CatalogRecord
from medimage.core.executions import commit_execution_name
from medimage.core.manifests import read_csv
from medimage.core.presets import SPLITS
from medimage.services.datasets import DatasetResolver
from medimage.services.split import AnnotationInProgress, Splitter

DS = "chestxray2017-binary"
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def record(n: int, label: str, split: str) -> CatalogRecord:
    return CatalogRecord(
        dataset=DS,
        sha256=f"{n:064x}",
        key=f"incoming/labeled/{DS}/{label.upper()}/person{n}_x.jpeg",
        label=label,
        patient_id=f"person{n}",
        group=f"person{n}",
        split=split,
        width=64,
        height=64,
        mode="L",
        format="jpeg",
        size_bytes=1000,
        catalogued_at=NOW.isoformat(),
    )


def catalog_with(n: int, start: int = 0) -> InMemoryCatalog:
    catalog = InMemoryCatalog()
    add(catalog, n, start)
    return catalog


def add(catalog: InMemoryCatalog, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        catalog.record_image(record(i, ("normal", "pneumonia")[i % 2], SPLITS[i % 3]))


def splitter(store, catalog, workflow=None, min_new=1, backlog=None, clock=lambda: NOW) -> Splitter:
    return Splitter(store, catalog, DatasetResolver(), workflow, min_new, clock=clock, backlog=backlog)


def test_a_commit_writes_every_split_then_starts_one_execution_then_marks_latest():
    store, workflow = InMemoryObjectStore(), RecordingWorkflow()
    result = splitter(store, catalog_with(12), workflow).commit(DS)
    assert result.status == "written" and result.new_images == 12
    prefix = f"manifests/{DS}/{result.version}/"
    rows = [row for split in SPLITS for row in read_csv(store.get_text(f"{prefix}{split}.csv"))]
    assert len(rows) == 12 and len({r["sha256"] for r in rows}) == 12
    name = commit_execution_name(DS, result.version)
    assert workflow.executions == {
        name: {
            "dataset": DS,
            "preset": DS,
            "manifest_version": result.version,
            "bucket": store.bucket,
            "manifest_prefix": prefix,
        }
    }
    written = [key for op, key in store.log if op == "put"]
    assert written[-1] == f"manifests/{DS}/latest.json" and f"{prefix}stats.json" in written


def test_a_redelivered_commit_rewrites_the_same_version_and_trains_once():
    store, workflow, catalog = InMemoryObjectStore(), RecordingWorkflow(), catalog_with(9)
    first = splitter(store, catalog, workflow).commit(DS)
    store.delete(f"manifests/{DS}/latest.json")  # the first delivery died before its last write
    again = splitter(store, catalog, workflow).commit(DS)
    assert again.version == first.version and len(workflow.executions) == 1


def test_nothing_new_and_too_few_new_write_nothing():
    store, workflow, catalog = InMemoryObjectStore(), RecordingWorkflow(), catalog_with(6)
    splitter(store, catalog, workflow).commit(DS)
    before = store.keys()
    assert splitter(store, catalog, workflow).commit(DS).status == "nothing_new"
    add(catalog, 2, start=100)
    later = datetime(2026, 12, 2, tzinfo=UTC)
    assert (
        splitter(store, catalog, workflow, min_new=5, clock=lambda: later).commit(DS).status == "too_few_new"
    )
    assert store.keys() == before and len(workflow.executions) == 1


def test_a_commit_waits_for_annotation_and_is_retried_rather_than_leaving_images_out():
    store, workflow = InMemoryObjectStore(), RecordingWorkflow()
    service = splitter(store, catalog_with(6), workflow, backlog=FixedBacklog(3))
    with pytest.raises(AnnotationInProgress):
        service.commit(DS)
    assert store.keys() == [] and workflow.executions == {}
