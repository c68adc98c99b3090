"""The bulk import's rules on fakes: the folder-per-label mapping of local ingest, a rerun copying only what
is missing, failures recorded with their codes, sources never written, commit only within tolerance."""

from __future__ import annotations

import copy
import json

import pytest
from fakes import InMemoryImportCopier, InMemoryObjectStore

from medimage.core import layout
from medimage.core.errors import BulkImportProblem
from medimage.services.bulk_import import (
    BATCH_FAILED,
    SOURCE_MISSING,
    BulkImporter,
    ImportRequest,
    batch_id,
)
from medimage.services.datasets import DatasetResolver

SOURCE = "site-archive"
PREFIX = "exports/xray/"


def request(**overrides) -> ImportRequest:
    payload = {
        "dataset": "chestxray2017",
        "source_bucket": SOURCE,
        "source_prefix": "exports/xray",
        "import_id": "run-1",
        "tolerated_failure_percent": 10,
        **overrides,
    }
    return ImportRequest.from_payload(payload)


def tree(n_per_label: int = 4) -> dict[str, bytes]:
    files = {}
    for label in ("NORMAL", "PNEUMONIA"):
        for i in range(n_per_label):
            files[f"{PREFIX}{label}/person{i}_bacteria_{i}.jpeg"] = f"{label}-{i}".encode()
    return files


def setup(files: dict[str, bytes]) -> tuple[BulkImporter, InMemoryObjectStore, InMemoryImportCopier]:
    store = InMemoryObjectStore("data-bucket")
    copier = InMemoryImportCopier(store, {SOURCE: dict(files)})
    return BulkImporter(store, copier, DatasetResolver(), frozenset({SOURCE})), store, copier


def test_keys_map_to_label_folders_as_local_ingest_maps_files():
    files = {
        **tree(1),
        f"{PREFIX}NORMAL/sub/deeper.png": b"deep",
        f"{PREFIX}loose.jpeg": b"not in a label folder",
        f"{PREFIX}NORMAL/.hidden.jpeg": b"hidden",
        f"{PREFIX}__MACOSX/NORMAL/x.jpeg": b"litter",
        f"{PREFIX}NORMAL/notes.txt": b"not an image",
        f"{PREFIX}NORMAL/": b"",
    }
    importer, store, _ = setup(files)
    result = importer.copy_batch(request(), sorted(files))
    assert sorted(store.keys(layout.LABELED_PREFIX)) == [
        "incoming/labeled/chestxray2017/NORMAL/person0_bacteria_0.jpeg",
        "incoming/labeled/chestxray2017/NORMAL/sub/deeper.png",
        "incoming/labeled/chestxray2017/PNEUMONIA/person0_bacteria_0.jpeg",
    ]
    assert (result.copied, result.skipped, result.ignored, len(result.failures)) == (3, 0, 5, 0)
    reasons = {item["key"].removeprefix(PREFIX): item["reason"] for item in result.ignored_keys}
    assert reasons["loose.jpeg"] == "not in a label folder"
    assert reasons["NORMAL/.hidden.jpeg"] == "hidden"
    assert reasons["__MACOSX/NORMAL/x.jpeg"] == "operating-system litter"
    assert reasons["NORMAL/notes.txt"] == "not an image suffix"


def test_a_rerun_copies_only_what_is_missing_or_changed():
    files = tree(4)
    importer, store, copier = setup(files)
    first = importer.copy_batch(request(), sorted(files))
    assert (first.copied, first.skipped) == (8, 0)

    store.delete("incoming/labeled/chestxray2017/NORMAL/person1_bacteria_1.jpeg")
    changed = f"{PREFIX}PNEUMONIA/person2_bacteria_2.jpeg"
    copier.sources[SOURCE][changed] = b"a new scan, another size"
    copier.copied.clear()
    second = importer.copy_batch(request(import_id="run-2"), sorted(files))
    assert (second.copied, second.skipped) == (2, 6)
    assert sorted(copier.copied) == [
        "incoming/labeled/chestxray2017/NORMAL/person1_bacteria_1.jpeg",
        "incoming/labeled/chestxray2017/PNEUMONIA/person2_bacteria_2.jpeg",
    ]


def test_same_size_but_another_source_etag_is_copied_again():
    files = {f"{PREFIX}NORMAL/a.jpeg": b"aaaa"}
    importer, store, copier = setup(files)
    importer.copy_batch(request(), list(files))
    copier.sources[SOURCE][f"{PREFIX}NORMAL/a.jpeg"] = b"bbbb"
    again = importer.copy_batch(request(), list(files))
    assert (again.copied, again.skipped) == (1, 0)
    assert store.objects["incoming/labeled/chestxray2017/NORMAL/a.jpeg"] == b"bbbb"


def test_a_quarantined_copy_counts_as_imported():
    files = {f"{PREFIX}NORMAL/broken.jpeg": b"not a jpeg"}
    importer, store, copier = setup(files)
    importer.copy_batch(request(), list(files))
    dest = "incoming/labeled/chestxray2017/NORMAL/broken.jpeg"
    quarantined = layout.quarantine_key("chestxray2017", dest)
    store.copy(dest, quarantined)  # what annotate does with a rejected upload (metadata kept)
    copier.metadata[quarantined] = copier.metadata[dest]
    store.delete(dest)
    again = importer.copy_batch(request(), list(files))
    assert (again.copied, again.skipped) == (0, 1)
    assert not store.exists(dest)


def test_failures_are_recorded_with_codes_and_do_not_stop_the_batch():
    files = tree(3)
    importer, store, copier = setup(files)
    keys = sorted(files)
    copier.fail[keys[0]] = "source_unreadable"
    del copier.sources[SOURCE][keys[1]]  # listed, then gone
    result = importer.copy_batch(request(), keys)
    assert (result.copied, len(result.failures)) == (4, 2)
    codes = {f["key"]: f["code"] for f in result.failures}
    assert codes == {keys[0]: "source_unreadable", keys[1]: SOURCE_MISSING}
    record = store.get_json(layout.import_batch_key("chestxray2017", "run-1", batch_id(keys)))
    assert record["failed"] == 2 and record["copied"] == 4
    assert {f["code"] for f in record["failures"]} == {"source_unreadable", SOURCE_MISSING}

    # The next run retries the failed one that can now be read.
    copier.fail.clear()
    rerun = importer.copy_batch(request(import_id="run-2"), keys)
    assert (rerun.copied, rerun.skipped, len(rerun.failures)) == (1, 4, 1)


def test_an_unexpected_error_is_copy_failed_without_its_message():
    files = {f"{PREFIX}NORMAL/a.jpeg": b"a"}
    importer, _, copier = setup(files)

    def boom(source, dest_key):
        raise RuntimeError("s3://site-archive/exports/xray/NORMAL/a.jpeg: connection reset")

    copier.copy_in = boom  # type: ignore[method-assign]
    result = importer.copy_batch(request(), list(files))
    assert result.failures == [
        {"key": f"{PREFIX}NORMAL/a.jpeg", "code": "copy_failed", "message": "RuntimeError"}
    ]


def test_source_objects_are_never_written():
    files = tree(3)
    importer, store, copier = setup(files)
    before = copy.deepcopy(copier.sources)
    copier.fail[sorted(files)[0]] = "copy_failed"
    importer.copy_batch(request(commit=True), sorted(files))
    importer.finish(request(commit=True), {})
    assert copier.sources == before
    assert all(not k.startswith(PREFIX) for k in store.objects)


def test_a_retried_batch_overwrites_its_own_record():
    files = tree(2)
    importer, store, _ = setup(files)
    keys = sorted(files)
    importer.copy_batch(request(), keys)
    importer.copy_batch(request(), list(reversed(keys)))
    assert len(store.keys(layout.import_prefix("chestxray2017", "run-1") + "batches/")) == 1
    # The retry found the first attempt's copies: counted once, as skipped.
    summary = importer.finish(request(), {})
    assert (summary["copied"], summary["skipped"]) == (0, 4)


def test_finish_sums_the_batches_and_commits_within_tolerance():
    files = tree(10)
    importer, store, copier = setup(files)
    keys = sorted(files)
    copier.fail[keys[0]] = "copy_failed"
    importer.copy_batch(request(commit=True), keys[:10])
    importer.copy_batch(request(commit=True), keys[10:])
    summary = importer.finish(request(commit=True), {"ResultWriterDetails": None})
    assert (summary["copied"], summary["failed"], summary["within_tolerance"]) == (19, 1, True)
    assert summary["committed"] is True
    assert store.exists(layout.commit_key("chestxray2017"))
    failures = store.get_json(layout.import_failures_key("chestxray2017", "run-1"))["failures"]
    assert failures == [{"key": keys[0], "code": "copy_failed", "message": "the copy failed"}]
    assert store.get_json(layout.import_summary_key("chestxray2017", "run-1"))["failure_codes"] == {
        "copy_failed": 1
    }


def test_finish_does_not_commit_beyond_tolerance_or_when_not_asked():
    files = tree(5)
    importer, store, copier = setup(files)
    keys = sorted(files)
    for key in keys[:2]:
        copier.fail[key] = "source_unreadable"
    importer.copy_batch(request(commit=True), keys)
    summary = importer.finish(request(commit=True), {})
    assert (summary["failed"], summary["within_tolerance"], summary["committed"]) == (2, False, False)
    assert not store.exists(layout.commit_key("chestxray2017"))

    copier.fail.clear()
    importer.copy_batch(request(import_id="run-2"), keys)
    quiet = importer.finish(request(import_id="run-2"), {})
    assert (quiet["within_tolerance"], quiet["committed"]) == (True, False)
    assert not store.exists(layout.commit_key("chestxray2017"))


def test_a_failed_map_never_commits():
    files = tree(2)
    importer, store, _ = setup(files)
    importer.copy_batch(request(commit=True), sorted(files))
    summary = importer.finish(request(commit=True), {"Error": "States.ItemReaderFailed", "Cause": "denied"})
    assert summary["map_error"] == "States.ItemReaderFailed"
    assert summary["committed"] is False
    assert not store.exists(layout.commit_key("chestxray2017"))


def test_batches_whose_function_failed_are_listed_from_the_result_writer():
    files = tree(3)
    importer, store, _ = setup(files)
    keys = sorted(files)
    importer.copy_batch(request(), keys[:4])
    failed_input = {"Items": [{"key": k} for k in keys[4:]], "BatchInput": {}}
    store.put_json(
        "imports/map-runs/abc/FAILED_0.json", [{"Input": json.dumps(failed_input), "Error": "Lambda.Unknown"}]
    )
    store.put_json(
        "imports/map-runs/abc/manifest.json",
        {"ResultFiles": {"FAILED": [{"Key": "imports/map-runs/abc/FAILED_0.json"}], "SUCCEEDED": []}},
    )
    summary = importer.finish(
        request(), {"ResultWriterDetails": {"Key": "imports/map-runs/abc/manifest.json"}}
    )
    assert (summary["copied"], summary["failed"]) == (4, 2)
    assert summary["failure_codes"] == {BATCH_FAILED: 2}


def test_check_refuses_unknown_datasets_and_buckets_the_stack_may_not_read():
    importer, _, _ = setup({})
    assert importer.check(request())["source_prefix"] == PREFIX
    with pytest.raises(BulkImportProblem) as unknown:
        importer.check(request(dataset="mystery-scans"))
    assert unknown.value.code == "unknown_dataset"
    with pytest.raises(BulkImportProblem) as elsewhere:
        importer.check(request(source_bucket="someone-elses-bucket"))
    assert elsewhere.value.code == "source_not_allowed"
    assert "BulkImportSourceBuckets" in elsewhere.value.message
    with pytest.raises(BulkImportProblem) as own:
        importer.check(request(source_bucket="data-bucket"))
    assert own.value.code == "source_not_allowed"
    with pytest.raises(BulkImportProblem) as inventory:
        importer.check(request(inventory_manifest="s3://other-inventories/x/manifest.json"))
    assert inventory.value.code == "source_not_allowed"


@pytest.mark.parametrize(
    "payload",
    [
        None,
        {"source_bucket": SOURCE, "import_id": "r"},
        {"dataset": "bad name!", "source_bucket": SOURCE, "import_id": "r"},
        {"dataset": "chestxray2017", "source_bucket": "", "import_id": "r"},
        {
            "dataset": "chestxray2017",
            "source_bucket": SOURCE,
            "import_id": "r",
            "tolerated_failure_percent": 120,
        },
        {"dataset": "chestxray2017", "source_bucket": SOURCE, "import_id": "r", "max_concurrency": "many"},
        {
            "dataset": "chestxray2017",
            "source_bucket": SOURCE,
            "import_id": "r",
            "inventory_manifest": "x.json",
        },
    ],
)
def test_malformed_requests_are_bad_import_input(payload):
    with pytest.raises(BulkImportProblem) as problem:
        ImportRequest.from_payload(payload)
    assert problem.value.code == "bad_import_input"


def test_inventory_keys_are_url_decoded():
    files = {f"{PREFIX}NORMAL/scan one.jpeg": b"x"}
    importer, store, _ = setup(files)
    inventory = request(inventory_manifest=f"s3://{SOURCE}/inventory/manifest.json")
    result = importer.copy_batch(inventory, [f"{PREFIX}NORMAL/scan+one.jpeg"])
    assert result.copied == 1
    assert store.exists("incoming/labeled/chestxray2017/NORMAL/scan one.jpeg")
