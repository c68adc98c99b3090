"""`medimage ingest s3://...`: bad sources refused with stable codes before anything starts, and the
execution's answers (a refused request, too many failures, a summary) read back as the stack gives them."""

from __future__ import annotations

import json
from typing import Any

import pytest

from medimage.core.errors import BulkImportProblem
from medimage.ops import bulk_import as bulk

from .conftest import BUCKET

SOURCE = "site-archive"


@pytest.fixture
def source(s3: Any) -> Any:
    s3.create_bucket(Bucket=SOURCE)
    return s3


def test_a_prefix_without_label_folders_is_not_label_tree(source, cli):
    source.put_object(Bucket=SOURCE, Key="flat/scan1.jpeg", Body=b"x")
    source.put_object(Bucket=SOURCE, Key="flat/notes/readme.txt", Body=b"x")
    run = cli("ingest", "s3://site-archive/flat", "--dataset", "chestxray2017", "--bucket", BUCKET)
    assert run.code == 2
    assert "not_label_tree: s3://site-archive/flat/ is not a folder-per-label tree" in run.err
    assert "none of its first 2 keys" in run.err


def test_an_empty_prefix_is_not_label_tree(source, cli):
    run = cli("ingest", "s3://site-archive/nothing/", "--dataset", "chestxray2017", "--bucket", BUCKET)
    assert run.code == 2 and "not_label_tree" in run.err and "it is empty" in run.err


def test_a_bucket_that_cannot_be_listed_is_source_unreadable(s3, cli):
    run = cli("ingest", "s3://no-such-archive/x/", "--dataset", "chestxray2017", "--bucket", BUCKET)
    assert run.code == 2
    assert "source_unreadable: cannot list s3://no-such-archive/x/ (NoSuchBucket)" in run.err


@pytest.mark.parametrize(
    ("uri", "dataset", "expected"),
    [
        ("s3://", "chestxray2017", "bad_import_input"),
        ("s3://site-archive/x/", "bad name!", "bad_import_input"),
    ],
)
def test_a_malformed_source_or_dataset_is_bad_import_input(source, cli, uri, dataset, expected):
    run = cli("ingest", uri, "--dataset", dataset, "--bucket", BUCKET)
    assert run.code == 2 and f"{expected}: " in run.err


def test_the_preflight_counts_the_keys_that_map_to_a_label_folder(source):
    for key in ("t/NORMAL/a.jpeg", "t/PNEUMONIA/b.png", "t/readme.txt", "t/NORMAL/.hidden.jpeg"):
        source.put_object(Bucket=SOURCE, Key=key, Body=b"x")
    assert bulk.preflight(source, bulk.parse_source("s3://site-archive/t"), "chestxray2017") == 2


def described(status: str, **extra: Any) -> dict[str, Any]:
    return {
        "executionArn": "arn:aws:states:us-east-1:123456789012:execution:m:chestxray2017-1",
        "status": status,
        **extra,
    }


def test_a_refused_request_raises_its_code_and_message(s3):
    src = bulk.parse_source("s3://site-archive/t/")
    cause = "dataset 'mystery' has no preset: name it after a preset or map it in DATASET_PRESETS"
    with pytest.raises(BulkImportProblem) as problem:
        bulk.outcome(s3, BUCKET, "mystery", src, described("FAILED", error="unknown_dataset", cause=cause))
    assert (problem.value.code, problem.value.message) == ("unknown_dataset", cause)


def test_too_many_failures_reads_the_summary_the_finish_step_wrote(s3):
    summary = {
        "dataset": "chestxray2017",
        "copied": 50,
        "failed": 10,
        "failure_codes": {"source_unreadable": 10},
    }
    key = "imports/chestxray2017/chestxray2017-1/summary.json"
    s3.put_object(Bucket=BUCKET, Key=key, Body=json.dumps({**summary, "commit_requested": True}))
    src = bulk.parse_source("s3://site-archive/t/")
    result = bulk.outcome(s3, BUCKET, "chestxray2017", src, described("FAILED", error="BulkImportFailures"))
    assert not result.ok and result.summary["failed"] == 10
    lines = list(bulk.summary_lines(result, BUCKET))
    assert "50 copied" in lines[0] and "10 failed" in lines[0]
    assert lines[1].startswith("failures (source_unreadable 10)")
    assert lines[2].startswith("not committed")


def test_another_failure_is_import_failed(s3):
    src = bulk.parse_source("s3://site-archive/t/")
    with pytest.raises(BulkImportProblem) as problem:
        bulk.outcome(s3, BUCKET, "d", src, described("TIMED_OUT", error="States.Timeout"))
    assert problem.value.code == "import_failed"
