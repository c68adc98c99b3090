"""The streamed split writes what the in-memory split wrote: same version, files and statistics."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from fakes import InMemoryCatalog, InMemoryObjectStore

from medimage.core.catalog import CatalogRecord
from medimage.core.manifests import CHANNEL_OF_SPLIT, plan_manifest, to_csv, to_sagemaker_manifest
from medimage.core.presets import SPLITS
from medimage.core.splits import assign_split, group_of
from medimage.services.datasets import DatasetResolver
from medimage.services.split import Splitter

DS = "chestxray2017"
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
RATIOS = {"train": 0.7, "val": 0.15, "test": 0.15}


def record(n: int) -> CatalogRecord:
    patient = f"person{n // 3}" if n % 5 else None  # some images share a patient, some have none
    sha = f"{(n * 2654435761) % 2**64:016x}" * 4
    group = group_of(patient, sha)
    label = ("normal", "bacterial", "viral")[n % 3]
    return CatalogRecord(
        dataset=DS,
        sha256=sha,
        key=f"incoming/labeled/{DS}/{label.upper()}/{patient or 'anon'}_{n}.jpeg",
        label=label,
        patient_id=patient,
        group=group,
        split=assign_split(DS, group, RATIOS),
        width=1000 + 37 * (n % 7) + (200 if label == "viral" else 0),  # the shape audit has work to do
        height=800 + 11 * (n % 4),
        mode="L",
        format="jpeg",
        size_bytes=1000 + n,
        catalogued_at=(NOW - timedelta(minutes=n)).isoformat(),
    )


def catalog_of(records: list[CatalogRecord]) -> InMemoryCatalog:
    catalog = InMemoryCatalog(page_size=7)
    for r in records:
        catalog.record_image(r)
    catalog.record_image(
        CatalogRecord(**{**records[0].__dict__, "key": "incoming/labeled/x/NORMAL/copy.jpeg"})
    )
    catalog.record_quarantine(DS, "incoming/labeled/chestxray2017/NORMAL/bad.jpeg", "truncated", "cut", "t")
    return catalog


def expected_files(store: InMemoryObjectStore, records, previous: set[str], classes) -> dict[str, object]:
    """What the split wrote before it streamed: ``plan_manifest`` on the whole snapshot."""
    plan = plan_manifest(DS, classes, records, previous, 1, {"truncated": 1}, NOW)
    prefix = f"manifests/{DS}/{plan.version}/"
    files: dict[str, object] = {}
    for split in SPLITS:
        files[f"{prefix}{split}.csv"] = to_csv(plan.rows[split])
        files[f"{prefix}{split}.manifest"] = to_sagemaker_manifest(
            store.bucket, f"{prefix}{split}.csv", plan.rows[split]
        )
    files[f"{prefix}stats"] = plan.stats
    return files


def written_files(store: InMemoryObjectStore, version: str) -> dict[str, object]:
    prefix = f"manifests/{DS}/{version}/"
    files: dict[str, object] = {}
    for split in SPLITS:
        for ext in ("csv", "manifest"):
            files[f"{prefix}{split}.{ext}"] = store.get_text(f"{prefix}{split}.{ext}")
    stats = store.get_json(f"{prefix}stats.json")
    for added in ("channels", "preset", "previous_version", "input"):
        stats.pop(added)
    files[f"{prefix}stats"] = stats
    return files


def test_streamed_manifests_equal_the_in_memory_ones_version_after_version():
    store = InMemoryObjectStore()
    classes = ["normal", "bacterial", "viral"]
    first_records = [record(n) for n in range(120)]
    splitter = Splitter(store, catalog_of(first_records), DatasetResolver(), None, 1, clock=lambda: NOW)
    first = splitter.commit(DS)
    assert written_files(store, first.version) == expected_files(store, first_records, set(), classes)
    # a second batch: new images are counted against the first version's CSVs, read as they stream
    more = [record(n) for n in range(120, 200)]
    splitter.catalog = catalog_of(first_records + more)
    second = splitter.commit(DS)
    previous = {r.sha256 for r in first_records}
    assert second.new_images == 80
    expected = expected_files(store, first_records + more, previous, classes)
    assert written_files(store, second.version) == expected
    stats = store.get_json(f"manifests/{DS}/{second.version}/stats.json")
    assert stats["previous_version"] == first.version and stats["channels"] == CHANNEL_OF_SPLIT
    assert stats["shortcut_audit"]["warnings"]  # the viral images are wider: the audit still sees it


def test_a_patient_never_straddles_two_splits():
    store = InMemoryObjectStore()
    records = [record(n) for n in range(300)]
    result = Splitter(store, catalog_of(records), DatasetResolver(), None, 1, clock=lambda: NOW).commit(DS)
    split_of_patient: dict[str, set[str]] = {}
    for split in SPLITS:
        text = store.get_text(f"manifests/{DS}/{result.version}/{split}.csv")
        for line in text.splitlines()[1:]:
            patient = line.split(",")[3]
            if patient:
                split_of_patient.setdefault(patient, set()).add(split)
    assert split_of_patient and all(len(splits) == 1 for splits in split_of_patient.values())


def test_a_version_already_written_is_left_as_it_is():
    store = InMemoryObjectStore()
    records = [record(n) for n in range(30)]
    splitter = Splitter(store, catalog_of(records), DatasetResolver(), None, 1, clock=lambda: NOW)
    version = splitter.commit(DS).version
    store.delete(f"manifests/{DS}/latest.json")
    puts_before = [k for op, k in store.log if op == "put"]
    assert splitter.commit(DS).version == version
    rewritten = [
        k for op, k in store.log[len(puts_before) :] if op == "put" and k.endswith((".csv", ".manifest"))
    ]
    assert rewritten == []
    assert json.loads(store.get_text(f"manifests/{DS}/{version}/train.manifest"))[0] == {
        "prefix": f"s3://{store.bucket}/"
    }
