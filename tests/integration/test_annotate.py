"""Annotate on the emulated AWS: real S3 -> SQS notifications, the real handler, the real catalog."""

from __future__ import annotations

import json

import boto3
import pytest

from medimage.adapters.catalog import DynamoCatalog
from medimage.core.presets import get_preset
from medimage.local.synthetic import BAD_FILE_CODES, bad_files, generate

S3 = "s3"


def upload(env, key: str, data: bytes) -> None:
    boto3.client(S3).put_object(Bucket=env.bucket, Key=key, Body=data)


def keys(env, prefix: str) -> list[str]:
    res = boto3.client(S3).list_objects_v2(Bucket=env.bucket, Prefix=prefix)
    return sorted(o["Key"] for o in res.get("Contents", []))


def annotate(env, event):
    return env.functions["AnnotateFunction"].invoke(event)


def test_valid_uploads_are_catalogued_with_label_patient_and_split(local_aws):
    # GIVEN synthetic ChestXRay2017-style uploads
    files = generate(get_preset("chestxray2017"), per_class=4, size=32)
    for f in files:
        upload(local_aws, f"incoming/labeled/chestxray2017/{f.folder}/{f.filename}", f.data)
    # WHEN the queued S3 notifications are delivered
    report = local_aws.pump()
    # THEN every image has one catalog record with the preset's label and the file's patient id
    assert report.failed_messages == 0
    snapshot = DynamoCatalog(local_aws.table).snapshot("chestxray2017")
    by_key = {r.key.rsplit("/", 1)[1]: r for r in snapshot.records}
    assert len(by_key) == len(files)
    for f in files:
        record = by_key[f.filename]
        assert record.label == f.label
        assert record.patient_id == get_preset("chestxray2017").patient_id(f.filename)
        assert record.split in {"train", "val", "test"}
        assert (record.width, record.height, record.mode, record.format) == (32, 32, "RGB", "jpeg")
    assert keys(local_aws, "quarantine/") == []


@pytest.mark.parametrize(
    ("name", "code"),
    sorted(BAD_FILE_CODES.items()),
)
def test_bad_files_are_moved_to_quarantine_with_a_reason(local_aws, name, code):
    key = f"incoming/labeled/chestxray2017/NORMAL/{name}"
    upload(local_aws, key, bad_files()[name])
    local_aws.pump()
    # THEN the object lives only in quarantine, beside a machine-readable reason
    assert keys(local_aws, "incoming/") == []
    assert keys(local_aws, "quarantine/") == [
        f"quarantine/chestxray2017/{key}",
        f"quarantine/chestxray2017/{key}.reason.json",
    ]
    body = boto3.client(S3).get_object(Bucket=local_aws.bucket, Key=f"quarantine/chestxray2017/{key}")["Body"]
    assert body.read() == bad_files()[name]
    reason = json.loads(
        boto3.client(S3)
        .get_object(Bucket=local_aws.bucket, Key=f"quarantine/chestxray2017/{key}.reason.json")["Body"]
        .read()
    )
    assert reason["code"] == code and reason["original_key"] == key and reason["message"]
    assert DynamoCatalog(local_aws.table).snapshot("chestxray2017").quarantined == {code: 1}


def test_unknown_label_and_unknown_dataset_are_quarantined(local_aws):
    good = generate(get_preset("chestxray2017"), per_class=1, size=32)[0].data
    upload(local_aws, "incoming/labeled/chestxray2017/COVID/a.jpeg", good)
    upload(local_aws, "incoming/labeled/mnist/seven/b.jpeg", good)
    upload(local_aws, "incoming/labeled/chestxray2017/loose.jpeg", good)
    local_aws.pump()
    reasons = {
        k: json.loads(boto3.client(S3).get_object(Bucket=local_aws.bucket, Key=k)["Body"].read())["code"]
        for k in keys(local_aws, "quarantine/")
        if k.endswith(".reason.json")
    }
    assert reasons == {
        "quarantine/chestxray2017/incoming/labeled/chestxray2017/COVID/a.jpeg.reason.json": "unknown_label",
        "quarantine/mnist/incoming/labeled/mnist/seven/b.jpeg.reason.json": "unknown_dataset",
        "quarantine/chestxray2017/incoming/labeled/chestxray2017/loose.jpeg.reason.json": "no_label",
    }


def test_too_large_objects_are_quarantined_unread():
    from moto import mock_aws

    from medimage.local.environment import LocalAws

    with mock_aws():
        env = LocalAws(parameters={"MaxImageBytes": "1000"}).create()
        upload(
            env,
            "incoming/labeled/chestxray2017/NORMAL/big.jpeg",
            generate(get_preset("chestxray2017"), per_class=1, size=128)[0].data,
        )
        env.pump()
        assert DynamoCatalog(env.table).snapshot("chestxray2017").quarantined == {"too_large": 1}


def test_duplicate_delivery_is_recorded_once(local_aws, load_event):
    # GIVEN an image and the SQS event that announces it, delivered twice
    data = generate(get_preset("chestxray2017"), per_class=1, size=32)[1].data
    upload(local_aws, "incoming/labeled/chestxray2017/PNEUMONIA/person1_bacteria_1.jpeg", data)
    event = load_event("annotate-sqs-labeled-put.json", local_aws.bucket)
    first = annotate(local_aws, event)
    second = annotate(local_aws, event)
    # THEN both succeed and the catalog holds one record, not counted as a duplicate
    assert first == second == {"batchItemFailures": []}
    snapshot = DynamoCatalog(local_aws.table).snapshot("chestxray2017")
    assert len(snapshot.records) == 1 and snapshot.duplicates == 0


def test_same_bytes_under_another_key_count_as_one_duplicate(local_aws):
    data = generate(get_preset("chestxray2017"), per_class=1, size=32)[0].data
    upload(local_aws, "incoming/labeled/chestxray2017/NORMAL/IM-0001-0001.jpeg", data)
    upload(local_aws, "incoming/labeled/chestxray2017/NORMAL/IM-0001-0001 (copy).jpeg", data)
    local_aws.pump()
    upload(local_aws, "incoming/labeled/chestxray2017/NORMAL/IM-0001-0001 (copy).jpeg", data)  # re-upload
    local_aws.pump()
    snapshot = DynamoCatalog(local_aws.table).snapshot("chestxray2017")
    assert [r.key for r in snapshot.records] == ["incoming/labeled/chestxray2017/NORMAL/IM-0001-0001.jpeg"]
    assert snapshot.duplicates == 1


def test_out_of_order_delivery_gives_the_same_catalog(local_aws, load_event):
    # GIVEN two uploads whose notifications are delivered newest first, and one redelivered after
    # its object was quarantined
    files = generate(get_preset("chestxray2017"), per_class=1, size=32)[:2]
    events = []
    for f in files:
        key = f"incoming/labeled/chestxray2017/{f.folder}/{f.filename}"
        upload(local_aws, key, f.data)
        events.append(load_event("annotate-sqs-labeled-put.json", local_aws.bucket))
        events[-1]["Records"][0]["body"] = events[-1]["Records"][0]["body"].replace(
            "PNEUMONIA/person1_bacteria_1.jpeg", f"{f.folder}/{f.filename}"
        )
    for event in reversed(events):
        assert annotate(local_aws, event) == {"batchItemFailures": []}
    upload(local_aws, "incoming/labeled/chestxray2017/NORMAL/bad.jpeg", b"")
    local_aws.pump()
    stale = load_event("annotate-sqs-labeled-put.json", local_aws.bucket)
    stale["Records"][0]["body"] = stale["Records"][0]["body"].replace(
        "PNEUMONIA/person1_bacteria_1.jpeg", "NORMAL/bad.jpeg"
    )
    assert annotate(local_aws, stale) == {"batchItemFailures": []}
    # THEN both images are catalogued once and the quarantined one stays quarantined once
    snapshot = DynamoCatalog(local_aws.table).snapshot("chestxray2017")
    assert sorted(r.key.rsplit("/", 1)[1] for r in snapshot.records) == sorted(f.filename for f in files)
    assert snapshot.quarantined == {"empty": 1}


def test_a_poisoned_record_fails_alone(local_aws, load_event):
    files = generate(get_preset("chestxray2017"), per_class=3, size=32)
    upload(local_aws, "incoming/labeled/chestxray2017/NORMAL/IM-0115-0001.jpeg", files[0].data)
    upload(local_aws, "incoming/labeled/chestxray2017/PNEUMONIA/person2_virus_3.jpeg", files[-1].data)
    event = load_event("annotate-sqs-batch-with-poisoned-record.json", local_aws.bucket)
    result = annotate(local_aws, event)
    assert result == {"batchItemFailures": [{"itemIdentifier": event["Records"][1]["messageId"]}]}
    assert len(DynamoCatalog(local_aws.table).snapshot("chestxray2017").records) == 2


def test_url_encoded_keys_are_decoded(local_aws, load_event):
    upload(
        local_aws,
        "incoming/labeled/folders/chest films/scan (1).png",
        generate(get_preset("folders"), per_class=1, size=32)[0].data,
    )
    result = annotate(local_aws, load_event("annotate-sqs-url-encoded-key.json", local_aws.bucket))
    assert result == {"batchItemFailures": []}
    [record] = DynamoCatalog(local_aws.table).snapshot("folders").records
    assert (record.key, record.label) == ("incoming/labeled/folders/chest films/scan (1).png", "chest films")


def test_the_s3_test_event_is_acknowledged_and_ignored(local_aws, load_event):
    assert annotate(local_aws, load_event("annotate-sqs-s3-test-event.json", local_aws.bucket)) == {
        "batchItemFailures": []
    }
    assert keys(local_aws, "") == []


def test_commit_markers_are_left_to_split(local_aws):
    upload(local_aws, "incoming/labeled/chestxray2017/_commit", b"")
    report = local_aws.pump()
    annotate_results = [r for name, r in report.results if name == "AnnotateFunction"]
    assert annotate_results == [{"batchItemFailures": []}]
    assert keys(local_aws, "quarantine/") == []


def test_real_chest_xrays_get_their_labels_and_patient_groups(local_aws, real_data):
    root = real_data("chestxray2017-224-train")
    sample = sorted((root / "NORMAL").iterdir())[:15] + sorted((root / "PNEUMONIA").iterdir())[:25]
    for path in sample:
        upload(local_aws, f"incoming/labeled/chestxray2017/{path.parent.name}/{path.name}", path.read_bytes())
    assert local_aws.pump().failed_messages == 0
    records = DynamoCatalog(local_aws.table).snapshot("chestxray2017").records
    assert len(records) == len(sample)
    for r in records:
        name = r.key.rsplit("/", 1)[1]
        expected = "normal" if "/NORMAL/" in r.key else ("viral" if "virus" in name else "bacterial")
        assert r.label == expected
        assert r.patient_id and name.startswith(r.patient_id)
    by_patient: dict[str, set[str]] = {}
    for r in records:
        by_patient.setdefault(r.patient_id, set()).add(r.split)
    assert all(len(s) == 1 for s in by_patient.values())
    assert any(len([r for r in records if r.patient_id == p]) > 1 for p in by_patient)
