"""Annotate's rules: label, catalogue once, deduplicate, quarantine with a reason, stay idempotent."""

from __future__ import annotations

from datetime import UTC, datetime

from fakes import InMemoryCatalog, InMemoryObjectStore

from medimage.core.images import ImageLimits
from medimage.core.presets import get_preset
from medimage.local.synthetic import bad_files, generate
from medimage.services.annotate import Annotator, Status
from medimage.services.datasets import DatasetResolver

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
DS = "chestxray2017"


def annotator(store: InMemoryObjectStore, catalog: InMemoryCatalog, **kwargs) -> Annotator:
    return Annotator(store, catalog, DatasetResolver(), clock=lambda: NOW, **kwargs)


def one_image(index: int = 0):
    return generate(get_preset(DS), per_class=2, size=32)[index]


def test_an_image_is_catalogued_with_its_label_patient_and_split():
    image = one_image()
    key = f"incoming/labeled/{DS}/{image.folder}/{image.filename}"
    store, catalog = InMemoryObjectStore(objects={key: image.data}), InMemoryCatalog()
    result = annotator(store, catalog).annotate(key)
    assert result.status is Status.ACCEPTED and result.label == image.label
    [record] = catalog.snapshot(DS).records
    assert (record.key, record.label) == (key, image.label)
    assert record.patient_id == get_preset(DS).patient_id(image.filename)
    assert record.catalogued_at == NOW.isoformat()
    assert store.keys("quarantine/") == [] and store.exists(key)


def test_a_redelivery_is_a_no_op_and_a_copy_under_another_key_is_counted_once():
    image = one_image()
    key = f"incoming/labeled/{DS}/{image.folder}/{image.filename}"
    copy_key = f"incoming/labeled/{DS}/{image.folder}/copy-of-{image.filename}"
    store = InMemoryObjectStore(objects={key: image.data, copy_key: image.data})
    catalog = InMemoryCatalog()
    service = annotator(store, catalog)
    statuses = [service.annotate(k).status for k in (key, key, copy_key, copy_key)]
    assert statuses == [Status.ACCEPTED, Status.REDELIVERED, Status.DUPLICATE, Status.DUPLICATE]
    snapshot = catalog.snapshot(DS)
    assert len(snapshot.records) == 1 and snapshot.duplicates == 1


def test_a_bad_file_is_copied_and_explained_before_the_original_is_deleted():
    key = f"incoming/labeled/{DS}/NORMAL/IM-0001-0001.jpeg"
    store = InMemoryObjectStore(objects={key: bad_files()["truncated.jpeg"]})
    catalog = InMemoryCatalog()
    result = annotator(store, catalog).annotate(key)
    target = f"quarantine/{DS}/{key}"
    assert result.status is Status.QUARANTINED and result.quarantine_key == target
    assert store.log == [("copy", target), ("put", target + ".reason.json"), ("delete", key)]
    assert store.get_json(target + ".reason.json") == {
        "code": "truncated",
        "message": result.reason["message"],
        "original_key": key,
        "bucket": store.bucket,
        "stage": "annotate",
        "quarantined_at": NOW.isoformat(),
    }
    assert catalog.snapshot(DS).quarantined == {"truncated": 1}
    # A redelivery finds it moved and changes nothing.
    again = annotator(store, catalog).annotate(key)
    assert again.status is Status.QUARANTINED and again.reason["code"] == "already_quarantined"
    assert len(store.log) == 3


def test_an_object_over_the_byte_limit_is_refused_by_its_length():
    image = one_image()
    key = f"incoming/labeled/{DS}/{image.folder}/{image.filename}"
    store = InMemoryObjectStore(objects={key: image.data})
    result = annotator(store, InMemoryCatalog(), limits=ImageLimits(max_bytes=len(image.data) - 1)).annotate(
        key
    )
    assert result.status is Status.QUARANTINED and result.reason["code"] == "too_large"


def test_an_unknown_dataset_is_quarantined_and_the_commit_marker_ignored():
    store = InMemoryObjectStore(objects={"incoming/labeled/mri-knee/a/b.jpeg": one_image().data})
    catalog = InMemoryCatalog()
    result = annotator(store, catalog).annotate("incoming/labeled/mri-knee/a/b.jpeg")
    assert result.status is Status.QUARANTINED and result.reason["code"] == "unknown_dataset"
    assert store.keys() == [
        "quarantine/mri-knee/incoming/labeled/mri-knee/a/b.jpeg",
        "quarantine/mri-knee/incoming/labeled/mri-knee/a/b.jpeg.reason.json",
    ]
    marker = annotator(store, catalog).annotate(f"incoming/labeled/{DS}/_commit")
    assert marker.status is Status.IGNORED and marker.reason["code"] == "commit_marker"
