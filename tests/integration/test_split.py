"""Split on the emulated AWS: `_commit` -> EventBridge rule -> split -> manifests -> training started."""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws

from medimage.core.manifests import read_csv
from medimage.core.presets import get_preset
from medimage.local.environment import LocalAws
from medimage.local.synthetic import bad_files, generate


@pytest.fixture
def env():
    with mock_aws():
        yield LocalAws(parameters={"MinNewImages": "5"}).create()


def s3():
    return boto3.client("s3")


def get_json(env, key):
    return json.loads(s3().get_object(Bucket=env.bucket, Key=key)["Body"].read())


def get_text(env, key):
    return s3().get_object(Bucket=env.bucket, Key=key)["Body"].read().decode()


def upload_dataset(env, dataset="chestxray2017", per_class=6, seed=1, bad=True):
    files = generate(get_preset(dataset), per_class=per_class, size=32, seed=seed)
    for f in files:
        s3().put_object(
            Bucket=env.bucket, Key=f"incoming/labeled/{dataset}/{f.folder}/{f.filename}", Body=f.data
        )
    if bad:
        for name, data in bad_files().items():
            s3().put_object(Bucket=env.bucket, Key=f"incoming/labeled/{dataset}/NORMAL/{name}", Body=data)
    env.pump()
    return files


def commit(env, dataset="chestxray2017"):
    s3().put_object(Bucket=env.bucket, Key=f"incoming/labeled/{dataset}/_commit", Body=b"")
    report = env.pump()
    return [r for name, r in report.results if name == "SplitFunction"]


def executions(env):
    return boto3.client("stepfunctions").list_executions(stateMachineArn=env.state_machine_arn)["executions"]


def test_commit_writes_a_manifest_version_and_starts_training(env):
    # GIVEN 18 accepted images (3 classes) and 4 bad files, annotated
    files = upload_dataset(env)
    # WHEN the batch is committed
    [result] = commit(env)
    [summary] = result["results"]
    # THEN a manifest version exists with csv + SageMaker manifests + stats, and training started
    version = summary["version"]
    assert summary["status"] == "written" and summary["new_images"] == len(files)
    prefix = f"manifests/chestxray2017/{version}/"
    stats = get_json(env, prefix + "stats.json")
    assert stats["images"] == len(files)
    assert sum(stats["totals"].values()) == len(files)
    assert stats["quarantined"] == {"empty": 1, "not_an_image": 1, "truncated": 1, "unreadable": 1}
    assert stats["classes"] == ["normal", "bacterial", "viral"]
    # the synthetic images all share one shape: no class can be told by it
    assert stats["shortcut_audit"]["n"] == len(files) and stats["shortcut_audit"]["warnings"] == []
    rows = [
        row for split in ("train", "val", "test") for row in read_csv(get_text(env, f"{prefix}{split}.csv"))
    ]
    assert sorted(r["key"].rsplit("/", 1)[1] for r in rows) == sorted(f.filename for f in files)
    manifest = json.loads(get_text(env, prefix + "train.manifest"))
    assert manifest[0] == {"prefix": f"s3://{env.bucket}/"}
    assert manifest[1] == prefix + "train.csv"
    assert get_json(env, "manifests/chestxray2017/latest.json")["version"] == version
    [execution] = executions(env)
    described = boto3.client("stepfunctions").describe_execution(executionArn=execution["executionArn"])
    assert json.loads(described["input"]) == {
        "dataset": "chestxray2017",
        "preset": "chestxray2017",
        "manifest_version": version,
        "bucket": env.bucket,
        "manifest_prefix": prefix,
    }


def test_patients_never_straddle_splits_in_the_manifest(env):
    upload_dataset(env, per_class=20, bad=False)
    [result] = commit(env)
    prefix = f"manifests/chestxray2017/{result['results'][0]['version']}/"
    split_of: dict[str, set[str]] = {}
    for split in ("train", "val", "test"):
        for row in read_csv(get_text(env, f"{prefix}{split}.csv")):
            split_of.setdefault(row["patient_id"], set()).add(split)
    assert all(len(s) == 1 for s in split_of.values())


def test_a_commit_with_nothing_new_writes_nothing_and_says_so(env):
    upload_dataset(env, bad=False)
    commit(env)
    before = sorted(
        o["Key"] for o in s3().list_objects_v2(Bucket=env.bucket, Prefix="manifests/")["Contents"]
    )
    [again] = commit(env)
    assert again["results"][0]["status"] == "nothing_new"
    assert "nothing new" in again["results"][0]["message"]
    after = sorted(o["Key"] for o in s3().list_objects_v2(Bucket=env.bucket, Prefix="manifests/")["Contents"])
    assert before == after
    assert len(executions(env)) == 1


def test_new_data_makes_a_new_version_without_moving_old_images(env):
    upload_dataset(env, bad=False)
    [first] = commit(env)
    upload_dataset(env, seed=2, bad=False)
    [second] = commit(env)
    v1, v2 = first["results"][0]["version"], second["results"][0]["version"]
    assert v1 != v2 and second["results"][0]["new_images"] == 18

    def splits(version):
        return {
            r["key"]: split
            for split in ("train", "val", "test")
            for r in read_csv(get_text(env, f"manifests/chestxray2017/{version}/{split}.csv"))
        }

    old, new = splits(v1), splits(v2)
    assert all(new[key] == split for key, split in old.items())
    assert len(executions(env)) == 2


def test_fewer_than_min_new_images_starts_nothing_and_accumulates(env):
    files = generate(get_preset("chestxray2017"), per_class=1, size=32)
    for f in files[:3]:
        s3().put_object(
            Bucket=env.bucket, Key=f"incoming/labeled/chestxray2017/{f.folder}/{f.filename}", Body=f.data
        )
    env.pump()
    [result] = commit(env)
    assert result["results"][0]["status"] == "too_few_new"
    assert "MinNewImages=5" in result["results"][0]["message"]
    assert executions(env) == []
    upload_dataset(env, seed=3, bad=False)
    [result] = commit(env)
    assert result["results"][0]["status"] == "written" and result["results"][0]["new_images"] == 21


def test_duplicate_commit_delivery_trains_once(env, load_event):
    upload_dataset(env, bad=False)
    event = load_event("split-eventbridge-commit.json", env.bucket)
    first = env.functions["SplitFunction"].invoke(event)
    second = env.functions["SplitFunction"].invoke(event)
    assert first["results"][0]["status"] == "written"
    assert second["results"][0]["status"] == "nothing_new"
    assert len(executions(env)) == 1


def test_a_direct_s3_notification_event_also_works(env, load_event):
    upload_dataset(env, bad=False)
    result = env.functions["SplitFunction"].invoke(load_event("split-s3-commit-put.json", env.bucket))
    assert result["results"][0]["status"] == "written"


def test_non_commit_keys_are_ignored(env, load_event):
    event = load_event("split-s3-commit-put.json", env.bucket)
    event["Records"][0]["s3"]["object"]["key"] = "incoming/labeled/chestxray2017/NORMAL/x.jpeg"
    assert env.functions["SplitFunction"].invoke(event)["results"][0]["status"] == "ignored"


def test_a_commit_waits_for_uploads_still_being_annotated(env):
    # GIVEN images whose S3 notifications are still queued for annotate, and a `_commit` right after
    files = generate(get_preset("chestxray2017"), per_class=3, size=32)
    for f in files:
        s3().put_object(
            Bucket=env.bucket, Key=f"incoming/labeled/chestxray2017/{f.folder}/{f.filename}", Body=f.data
        )
    s3().put_object(Bucket=env.bucket, Key="incoming/labeled/chestxray2017/_commit", Body=b"")
    # WHEN split runs before annotate has drained its queue
    from medimage.services.split import AnnotationInProgress

    split = env.functions["SplitFunction"]
    event = {
        "source": "aws.s3",
        "detail-type": "Object Created",
        "detail": {
            "bucket": {"name": env.bucket},
            "object": {"key": "incoming/labeled/chestxray2017/_commit"},
        },
    }
    with pytest.raises(AnnotationInProgress, match=r"\d+ uploads are still being annotated"):
        split.invoke(event)
    assert s3().list_objects_v2(Bucket=env.bucket, Prefix="manifests/").get("KeyCount") == 0
    # THEN the retried commit, after annotation, includes every upload
    report = env.pump()
    [result] = [r for name, r in report.results if name == "SplitFunction"]
    assert result["results"][0]["status"] == "written"
    assert result["results"][0]["new_images"] == len(files)


def test_a_split_that_fails_while_writing_aborts_its_uploads_and_a_retry_writes_the_version(env, monkeypatch):
    """A manifest larger than a part goes up as a multipart upload; a failure half-way aborts it, so no
    half-written manifest and no orphaned parts are left, and the next commit writes the version whole."""
    import medimage.services.split as split_service
    from medimage.adapters.s3 import S3ObjectStore, S3Upload

    files = upload_dataset(env, bad=False)
    monkeypatch.setattr(
        S3ObjectStore,
        "start_upload",
        lambda self, key, content_type="application/octet-stream": S3Upload(
            self._s3, self.bucket, key, content_type, part_bytes=64
        ),
    )
    real_keys = split_service.sagemaker_manifest_keys

    def fail(keys):
        raise OSError("the function ran out of /tmp half-way")

    monkeypatch.setattr(split_service, "sagemaker_manifest_keys", fail)
    commit(env)
    assert s3().list_multipart_uploads(Bucket=env.bucket).get("Uploads", []) == []
    listed = s3().list_objects_v2(Bucket=env.bucket, Prefix="manifests/chestxray2017/").get("Contents", [])
    assert not [o["Key"] for o in listed if o["Key"].endswith((".csv", ".manifest"))]
    assert executions(env) == []

    monkeypatch.setattr(split_service, "sagemaker_manifest_keys", real_keys)
    monkeypatch.undo()
    [result] = commit(env)
    [summary] = result["results"]
    assert summary["status"] == "written" and summary["new_images"] == len(files)
    rows = [
        row
        for split in ("train", "val", "test")
        for row in read_csv(get_text(env, f"manifests/chestxray2017/{summary['version']}/{split}.csv"))
    ]
    assert len(rows) == len(files)
