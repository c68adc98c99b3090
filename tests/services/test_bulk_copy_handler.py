"""The bulk-copy handler on moto: the three steps of the bulk-import state machine with the payloads the
definition gives them, through the real S3 adapter (HEAD, CopyObject with the source ETag in the
metadata, the batch records, _commit)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from medimage.core import layout
from medimage.local.account import REGION
from medimage.local.functions import LocalFunction

REPO = Path(__file__).resolve().parents[2]
DATA = "medimage-data"
SOURCE = "site-archive"
PREFIX = "exports/xray/"
KEYS = [
    f"{PREFIX}NORMAL/IM-0001-0001.jpeg",
    f"{PREFIX}NORMAL/IM-0002-0001.jpeg",
    f"{PREFIX}PNEUMONIA/person1_bacteria_1.jpeg",
    f"{PREFIX}PNEUMONIA/person2_virus_2.jpeg",
]


@pytest.fixture
def s3() -> Iterator[Any]:
    from moto import mock_aws

    from medimage.adapters.aws import reset_clients

    with mock_aws():
        reset_clients()
        client = boto3.client("s3", region_name=REGION)
        for bucket in (DATA, SOURCE):
            client.create_bucket(Bucket=bucket)
        for i, key in enumerate(KEYS):
            client.put_object(
                Bucket=SOURCE, Key=key, Body=f"\xff\xd8 scan {i}".encode(), ContentType="image/jpeg"
            )
        client.put_object(Bucket=SOURCE, Key=f"{PREFIX}readme.txt", Body=b"left out")
        yield client
    reset_clients()


def bulk_copy(sources: str = SOURCE) -> LocalFunction:
    env = {"POWERTOOLS_SERVICE_NAME": "bulk_copy", "DATA_BUCKET": DATA, "BULK_IMPORT_SOURCE_BUCKETS": sources}
    return LocalFunction("BulkCopyFunction", REPO / "functions" / "bulk_copy", "app.lambda_handler", env)


def check(function: LocalFunction, **given: Any) -> dict[str, Any]:
    execution_input = {"dataset": "chestxray2017", "source_bucket": SOURCE, "source_prefix": PREFIX, **given}
    settings = {"import_id": "run-1", "max_concurrency": "10", "tolerated_failure_percent": "1"}
    return function.invoke({"action": "check", "input": execution_input, "settings": settings})


def copy_batch(function: LocalFunction, request: dict[str, Any], keys: list[str]) -> dict[str, Any]:
    return function.invoke({"action": "copy", "request": request, "items": [{"key": k} for k in keys]})


def test_check_copy_finish_then_a_rerun_skips_everything(s3):
    function = bulk_copy()
    answer = check(function, commit=True)
    assert answer["ok"] is True
    request = answer["request"]
    assert (request["max_concurrency"], request["tolerated_failure_percent"]) == (10, 1.0)
    before = {k: s3.head_object(Bucket=SOURCE, Key=k)["ETag"] for k in KEYS}

    counts = copy_batch(function, request, [*KEYS, f"{PREFIX}readme.txt"])
    assert (counts["copied"], counts["skipped"], counts["ignored"], counts["failed"]) == (4, 0, 1, 0)
    dest = "incoming/labeled/chestxray2017/PNEUMONIA/person1_bacteria_1.jpeg"
    head = s3.head_object(Bucket=DATA, Key=dest)
    assert head["Metadata"]["source-etag"] == before[KEYS[2]].strip('"')
    assert head["ContentType"] == "image/jpeg"

    summary = function.invoke({"action": "finish", "request": request, "map": {}})
    assert (summary["copied"], summary["failed"], summary["committed"]) == (4, 0, True)
    s3.head_object(Bucket=DATA, Key=layout.commit_key("chestxray2017"))
    stored = json.loads(
        s3.get_object(Bucket=DATA, Key=layout.import_summary_key("chestxray2017", "run-1"))["Body"].read()
    )
    assert stored["copied"] == 4

    again = copy_batch(function, {**request, "import_id": "run-2"}, KEYS)
    assert (again["copied"], again["skipped"]) == (0, 4)
    # The source is as it was: same objects, same ETags, nothing added.
    assert {k: s3.head_object(Bucket=SOURCE, Key=k)["ETag"] for k in KEYS} == before
    listed = s3.list_objects_v2(Bucket=SOURCE)["Contents"]
    assert sorted(o["Key"] for o in listed) == sorted([*KEYS, f"{PREFIX}readme.txt"])


def test_a_source_gone_before_its_batch_is_recorded_as_source_missing(s3):
    function = bulk_copy()
    request = check(function)["request"]
    s3.delete_object(Bucket=SOURCE, Key=KEYS[0])
    counts = copy_batch(function, request, KEYS)
    assert (counts["copied"], counts["failed"]) == (3, 1)
    summary = function.invoke({"action": "finish", "request": request, "map": {}})
    assert summary["failure_codes"] == {"source_missing": 1}
    assert summary["within_tolerance"] is False and summary["committed"] is False
    failures = json.loads(s3.get_object(Bucket=DATA, Key=summary["failures_key"])["Body"].read())["failures"]
    assert failures[0]["key"] == KEYS[0] and failures[0]["code"] == "source_missing"


def test_check_answers_refused_requests_with_their_code(s3):
    assert check(bulk_copy(), dataset="mystery")["code"] == "unknown_dataset"
    refused = check(bulk_copy(sources="another-bucket"))
    assert (refused["ok"], refused["code"]) == (False, "source_not_allowed")
    assert "BulkImportSourceBuckets" in refused["message"]
    assert check(bulk_copy(), source_bucket="")["code"] == "bad_import_input"


def test_an_unknown_step_fails_with_bulk_import_problem(s3):
    from medimage.core.errors import BulkImportProblem

    request = check(bulk_copy())["request"]
    with pytest.raises(BulkImportProblem, match="unknown bulk-import step"):
        bulk_copy().invoke({"action": "delete", "request": request})
