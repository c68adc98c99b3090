"""Bulk import on the local stack: `medimage ingest s3://...` runs statemachine/bulk_import.asl.json in
moto's interpreter (its Distributed Map over the source listing, the bulk-copy function per batch), an
interrupted first run is finished by a rerun that copies only what is missing, and the commit that
follows catalogues every image (the split's manifests count them)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import boto3
import pytest

from medimage.adapters.bulk_copy import S3ImportCopier
from medimage.cli.main import main
from medimage.core import layout
from medimage.core.errors import BulkImportProblem
from medimage.core.manifests import read_csv
from medimage.core.presets import get_preset
from medimage.local.account import REGION
from medimage.local.environment import LocalAws
from medimage.local.synthetic import generate

SOURCE = "site-archive-e2e"
PREFIX = "exports/xray/"
DATASET = "chestxray2017"
BATCH_SIZE = 5  # several batches even for these small trees


class NoTraining:
    """The local SageMaker's trainer: training is not what this test is about."""

    def __call__(self, channels: Any, hyperparameters: Any, model_dir: Path, output_dir: Path) -> Any:
        return self

    ok = False
    seconds = 0.0
    metrics: ClassVar[dict[str, float]] = {}
    failure_reason = "not trained in this test"


def local_stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **more: str) -> Iterator[LocalAws]:
    for name in ("MEDIMAGE_BUCKET", "MEDIMAGE_BULK_IMPORT_ARN", "MEDIMAGE_STACK", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MEDIMAGE_PRETRAINED_DIR", str(tmp_path / "no-weights"))
    parameters = {
        "BulkImportSourceBuckets": SOURCE,
        "MinNewImages": "1",
        "BulkImportMaxConcurrency": "4",
        "BulkImportBatchSize": str(BATCH_SIZE),
        **more,
    }
    # The Map runs batches side by side: the functions share one environment, as under `medimage up`.
    with LocalAws(parameters=parameters, concurrent=True).running(
        trainer=NoTraining(), work_dir=tmp_path, retry_delay_scale=0.01
    ) as stack:
        yield stack


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalAws]:
    yield from local_stack(tmp_path, monkeypatch)


@pytest.fixture
def tolerant_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalAws]:
    yield from local_stack(tmp_path, monkeypatch, BulkImportToleratedFailurePercent="50")


def s3() -> Any:
    return boto3.client("s3", region_name=REGION)


def put_source_tree(per_class: int) -> list[str]:
    s3().create_bucket(Bucket=SOURCE)
    keys = []
    for f in generate(get_preset(DATASET), per_class=per_class, size=32, seed=3):
        key = f"{PREFIX}{f.folder}/{f.filename}"
        s3().put_object(Bucket=SOURCE, Key=key, Body=f.data, ContentType="image/jpeg")
        keys.append(key)
    s3().put_object(Bucket=SOURCE, Key=f"{PREFIX}README.txt", Body=b"left out: not in a label folder")
    return keys


def ingest(env: LocalAws, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str]:
    capsys.readouterr()
    arn = env.refs["BulkImportStateMachine"]
    argv = ["ingest", f"s3://{SOURCE}/{PREFIX}", "--dataset", DATASET, "--bucket", env.bucket]
    code = main([*argv, "--state-machine", arn, "--timeout", "300", *extra])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def labeled_keys(env: LocalAws) -> set[str]:
    pages = (
        s3()
        .get_paginator("list_objects_v2")
        .paginate(Bucket=env.bucket, Prefix=f"incoming/labeled/{DATASET}/")
    )
    return {o["Key"] for page in pages for o in page.get("Contents", [])}


def test_an_interrupted_import_is_finished_by_a_rerun_and_the_commit_catalogues_all(
    env: LocalAws, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = put_source_tree(per_class=20)  # 60 images in 3 label folders (NORMAL, PNEUMONIA: bacteria, virus)
    assert len(keys) == 60
    source_before = {k: s3().head_object(Bucket=SOURCE, Key=k)["ETag"] for k in keys}

    # A first run that copies part: the copies of 12 keys fail (a source the stack may not read yet).
    unreadable = set(keys[::5])
    original = S3ImportCopier.copy_in

    def flaky(self: S3ImportCopier, source: Any, dest_key: str) -> None:
        if source.key in unreadable:
            raise BulkImportProblem("the stack may not read the source object", "source_unreadable")
        original(self, source, dest_key)

    monkeypatch.setattr(S3ImportCopier, "copy_in", flaky)
    code, out = ingest(env, capsys, "--commit")
    assert code == 1, out
    assert "48 copied" in out and "0 skipped" in out and "12 failed" in out and "1 left out" in out
    assert "failures (source_unreadable 12)" in out and "not committed" in out
    assert len(labeled_keys(env)) == 48
    assert layout.commit_key(DATASET) not in labeled_keys(env)
    (summary_key,) = [k for k in listing(env, "imports/") if k.endswith("/failures.json")]
    failures = json.loads(s3().get_object(Bucket=env.bucket, Key=summary_key)["Body"].read())["failures"]
    assert sorted(f["key"] for f in failures) == sorted(unreadable)

    # The rerun copies only the 12 that are missing, then commits.
    monkeypatch.setattr(S3ImportCopier, "copy_in", original)
    code, out = ingest(env, capsys, "--commit")
    assert code == 0, out
    assert "12 copied" in out and "48 skipped" in out and "0 failed" in out
    assert "committed: " in out
    images = {k for k in labeled_keys(env) if not k.endswith("/_commit")}
    assert images == {f"incoming/labeled/{DATASET}/{k.removeprefix(PREFIX)}" for k in keys}

    # The source is untouched.
    assert {k: s3().head_object(Bucket=SOURCE, Key=k)["ETag"] for k in keys} == source_before

    # Annotate catalogues the copies, the commit makes split write a manifest of all 60.
    env.pump()
    latest = json.loads(
        s3().get_object(Bucket=env.bucket, Key=layout.latest_manifest_key(DATASET))["Body"].read()
    )
    prefix = layout.manifest_prefix(DATASET, latest["version"])
    rows = [
        row
        for split in ("train", "val", "test")
        for row in read_csv(
            s3().get_object(Bucket=env.bucket, Key=f"{prefix}{split}.csv")["Body"].read().decode()
        )
    ]
    assert len(rows) == 60
    assert {r["key"] for r in rows} == images

    # A third run finds everything there.
    code, out = ingest(env, capsys)
    assert code == 0 and "0 copied" in out and "60 skipped" in out


def test_a_bucket_the_stack_may_not_read_is_refused_by_the_check_step(
    env: LocalAws, capsys: pytest.CaptureFixture[str]
) -> None:
    s3().create_bucket(Bucket="not-listed-archive")
    s3().put_object(Bucket="not-listed-archive", Key="t/NORMAL/IM-0001-0001.jpeg", Body=b"x")
    capsys.readouterr()
    arn = env.refs["BulkImportStateMachine"]
    argv = ["ingest", "s3://not-listed-archive/t/", "--dataset", DATASET, "--bucket", env.bucket]
    code = main([*argv, "--state-machine", arn, "--timeout", "120"])
    err = capsys.readouterr().err
    assert code == 2
    assert "source_not_allowed: bucket 'not-listed-archive' is not one the stack may import from" in err


def test_an_unknown_dataset_is_refused_by_the_check_step(
    env: LocalAws, capsys: pytest.CaptureFixture[str]
) -> None:
    put_source_tree(per_class=1)
    capsys.readouterr()
    arn = env.refs["BulkImportStateMachine"]
    argv = ["ingest", f"s3://{SOURCE}/{PREFIX}", "--dataset", "mystery-scans", "--bucket", env.bucket]
    code = main([*argv, "--state-machine", arn, "--timeout", "120"])
    err = capsys.readouterr().err
    assert code == 2 and "unknown_dataset: dataset 'mystery-scans' has no preset" in err


def test_batches_whose_function_fails_fail_the_map_and_nothing_is_committed(
    env: LocalAws, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from medimage.services.bulk_import import BulkImporter

    keys = put_source_tree(per_class=4)
    # The Map lists the prefix in key order and batches it: the batch holding keys[0] fails whole.
    listed = sorted([*keys, f"{PREFIX}README.txt"])
    batches = [listed[i : i + BATCH_SIZE] for i in range(0, len(listed), BATCH_SIZE)]
    (doomed,) = [b for b in batches if keys[0] in b]
    lost = len([k for k in doomed if k in keys])
    seen: list[list[str]] = []
    original = BulkImporter.copy_batch

    def crashing(self: BulkImporter, request: Any, batch: list[str]) -> Any:
        seen.append(sorted(batch))
        if keys[0] in batch:
            raise RuntimeError("the function died")
        return original(self, request, batch)

    monkeypatch.setattr(BulkImporter, "copy_batch", crashing)
    code, out = ingest(env, capsys, "--commit")
    assert code == 1, out
    assert sorted(seen) == sorted(batches)  # each child execution got one whole batch, once
    assert "the copy step failed (States.ExceedToleratedFailureThreshold)" in out
    assert f"{len(keys) - lost} copied" in out and "not committed" in out
    assert layout.commit_key(DATASET) not in labeled_keys(env)

    monkeypatch.setattr(BulkImporter, "copy_batch", original)
    code, out = ingest(env, capsys, "--commit")
    assert code == 0 and f"{lost} copied" in out and f"{len(keys) - lost} skipped" in out
    assert "committed: " in out


def test_a_failed_batch_within_tolerance_is_listed_key_by_key_for_the_rerun(
    tolerant_env: LocalAws, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from medimage.services.bulk_import import BATCH_FAILED, BulkImporter

    keys = put_source_tree(per_class=4)
    listed = sorted([*keys, f"{PREFIX}README.txt"])
    (doomed,) = [
        listed[i : i + BATCH_SIZE]
        for i in range(0, len(listed), BATCH_SIZE)
        if keys[0] in listed[i : i + BATCH_SIZE]
    ]
    original = BulkImporter.copy_batch

    def crashing(self: BulkImporter, request: Any, batch: list[str]) -> Any:
        if keys[0] in batch:
            raise RuntimeError("the function died")
        return original(self, request, batch)

    monkeypatch.setattr(BulkImporter, "copy_batch", crashing)
    code, out = ingest(tolerant_env, capsys, "--commit")
    # Within the 50 % tolerated, the import commits; the failed batch's keys are in failures.json.
    assert code == 1, out
    assert f"{len(doomed)} failed" in out and f"failures ({BATCH_FAILED} {len(doomed)})" in out
    (failures_key,) = [k for k in listing(tolerant_env, "imports/") if k.endswith("/failures.json")]
    body = s3().get_object(Bucket=tolerant_env.bucket, Key=failures_key)["Body"].read()
    failures = json.loads(body)["failures"]
    assert sorted(f["key"] for f in failures) == sorted(doomed)
    assert {f["code"] for f in failures} == {BATCH_FAILED}


def listing(env: LocalAws, prefix: str) -> list[str]:
    pages = s3().get_paginator("list_objects_v2").paginate(Bucket=env.bucket, Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]
