"""Drop-to-label: SQS-wrapped S3 events for incoming/unlabeled/, on moto S3 with the events/ files."""

from __future__ import annotations

import copy
import json
from typing import Any

from medimage.core.layout import prediction_key, review_json_key, review_key
from medimage.inference.model import TFLiteClassifier
from medimage.local.functions import load_handler_module

from .conftest import BUCKET, DATASET, LABELS, invoke, jpeg_bytes, load_event, publish

KEYS = [
    "incoming/unlabeled/chestxray2017/person1_virus_6.jpeg",
    "incoming/unlabeled/chestxray2017/scan from ward 3.jpeg",
]  # the second arrives as scan+from+ward+3


def keys_under(s3: Any, prefix: str) -> list[str]:
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", []))


def read(s3: Any, key: str) -> bytes:
    return s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()


def upload(s3: Any, key: str, data: bytes) -> None:
    s3.put_object(Bucket=BUCKET, Key=key, Body=data)


def sqs_event(*keys: str, base: str = "inference-sqs-s3-unlabeled.json") -> dict[str, Any]:
    """events/inference-sqs-s3-unlabeled.json, optionally with other (already URL-encoded) keys."""
    event = load_event(base)
    if not keys:
        return event
    template = event["Records"][0]
    records = []
    for i, key in enumerate(keys):
        record = copy.deepcopy(template)
        body = json.loads(record["body"])
        body["Records"][0]["s3"]["object"].update(key=key, sequencer=f"00AA{i:014d}")
        record["body"], record["messageId"] = json.dumps(body), f"message-{i}"
        records.append(record)
    return {"Records": records}


def test_the_event_file_carries_url_encoded_keys():
    bodies = [json.loads(r["body"]) for r in load_event("inference-sqs-s3-unlabeled.json")["Records"]]
    assert bodies[1]["Records"][0]["s3"]["object"]["key"].endswith("scan+from+ward+3.jpeg")


def test_drop_to_label_writes_results_and_the_batch_file(handler, s3, model_v1):
    publish(s3, model_v1, "v1")
    for i, key in enumerate(KEYS):
        upload(s3, key, jpeg_bytes(seed=i))
    response = invoke(handler, load_event("inference-sqs-s3-unlabeled.json"))
    assert response == {"batchItemFailures": []}
    lines = {}
    for key in KEYS:
        result = json.loads(read(s3, prediction_key(DATASET, key)))
        assert result["key"] == key and result["label"] in LABELS and result["model_version"] == "v1"
        assert result["label"] == max(result["probabilities"], key=result["probabilities"].get)
        lines[key.rsplit("/", 1)[1]] = result["label"]
    [batch_file] = [k for k in keys_under(s3, "predictions/") if k.endswith("prediction_output.txt")]
    text = read(s3, batch_file).decode()
    assert text == "".join(f"{name} {label}\n" for name, label in sorted(lines.items()))
    assert keys_under(s3, "incoming/unlabeled/") == sorted(KEYS)  # labeled originals stay
    assert keys_under(s3, "quarantine/") == []


def test_duplicate_delivery_does_not_duplicate_output(handler, s3, model_v1):
    publish(s3, model_v1, "v1")
    for i, key in enumerate(KEYS):
        upload(s3, key, jpeg_bytes(seed=i))
    event = load_event("inference-sqs-s3-unlabeled.json")
    invoke(handler, event)
    first = {k: read(s3, k) for k in keys_under(s3, "predictions/")}
    invoke(handler, event)  # the same batch again
    invoke(handler, {"Records": [event["Records"][1]]})  # one message again, in a batch of its own
    assert invoke(handler, {"Records": event["Records"][::-1]}) == {"batchItemFailures": []}
    after = {k: read(s3, k) for k in keys_under(s3, "predictions/")}
    assert sorted(after) == sorted(first)
    batch_files = [k for k in after if k.endswith("prediction_output.txt")]
    assert len(batch_files) == 1 and after[batch_files[0]] == first[batch_files[0]]
    results = [k for k in first if k.endswith(".json") and not k.endswith(".fhir.json")]
    labels = [json.loads(first[k])["label"] for k in results]
    assert [json.loads(after[k])["label"] for k in results] == labels
    reports = [k for k in first if k.endswith(".fhir.json")]  # one FHIR report per image, rewritten alike
    assert len(reports) == len(KEYS) and all(after[k] == first[k] for k in reports)


def test_a_batch_that_crashed_before_its_file_is_reported_by_the_next_one(handler, s3, model_v1):
    publish(s3, model_v1, "v1")
    for i, key in enumerate(KEYS):
        upload(s3, key, jpeg_bytes(seed=i))
    event = load_event("inference-sqs-s3-unlabeled.json")
    invoke(handler, event)
    [batch_file] = [k for k in keys_under(s3, "predictions/") if k.endswith("prediction_output.txt")]
    s3.delete_object(Bucket=BUCKET, Key=batch_file)  # as if the function died before writing it
    invoke(handler, {"Records": [event["Records"][0]]})
    invoke(handler, {"Records": [event["Records"][1]]})
    files = [k for k in keys_under(s3, "predictions/") if k.endswith("prediction_output.txt")]
    lines = sorted(line for k in files for line in read(s3, k).decode().splitlines())
    assert len(files) == 2 and [line.rsplit(" ", 1)[0] for line in lines] == [
        "person1_virus_6.jpeg",
        "scan from ward 3.jpeg",
    ]


def test_unreadable_file_is_quarantined_with_a_reason(handler, s3, model_v1):
    publish(s3, model_v1, "v1")
    upload(s3, KEYS[0], jpeg_bytes(seed=0))
    upload(s3, KEYS[1], jpeg_bytes(seed=1)[:600])  # truncated upload
    response = invoke(handler, load_event("inference-sqs-s3-unlabeled.json"))
    assert response == {"batchItemFailures": []}
    assert keys_under(s3, "quarantine/") == [
        f"quarantine/{DATASET}/{KEYS[1]}",
        f"quarantine/{DATASET}/{KEYS[1]}.reason.json",
    ]
    reason = json.loads(read(s3, f"quarantine/{DATASET}/{KEYS[1]}.reason.json"))
    assert reason["code"] == "truncated" and reason["original_key"] == KEYS[1] and reason["message"]
    assert reason["stage"] == "inference" and reason["bucket"] == BUCKET
    assert keys_under(s3, "incoming/unlabeled/") == [KEYS[0]]
    [batch_file] = [k for k in keys_under(s3, "predictions/") if k.endswith("prediction_output.txt")]
    assert read(s3, batch_file).decode().startswith("person1_virus_6.jpeg ")
    assert invoke(handler, load_event("inference-sqs-s3-unlabeled.json")) == {"batchItemFailures": []}
    assert len(keys_under(s3, "quarantine/")) == 2  # a redelivery finds it gone and does nothing


def test_unknown_dataset_is_quarantined(handler, s3, model_v1):
    publish(s3, model_v1, "v1")
    key = "incoming/unlabeled/mri-knee/a.jpeg"
    upload(s3, key, jpeg_bytes())
    assert invoke(handler, sqs_event(key)) == {"batchItemFailures": []}
    reason = json.loads(read(s3, f"quarantine/mri-knee/{key}.reason.json"))
    assert reason["code"] == "unknown_dataset"


def test_without_a_model_messages_fail_and_are_retried(handler, s3):
    for i, key in enumerate(KEYS):
        upload(s3, key, jpeg_bytes(seed=i))
    event = load_event("inference-sqs-s3-unlabeled.json")
    response = invoke(handler, event)
    assert response["batchItemFailures"] == [{"itemIdentifier": r["messageId"]} for r in event["Records"]]
    assert keys_under(s3, "predictions/") == [] and keys_under(s3, "quarantine/") == []


def test_s3_test_event_and_malformed_messages(handler, s3, model_v1):
    publish(s3, model_v1, "v1")
    upload(s3, KEYS[0], jpeg_bytes())
    assert invoke(handler, load_event("inference-sqs-s3-testevent.json")) == {"batchItemFailures": []}
    event = sqs_event("incoming/unlabeled/chestxray2017/person1_virus_6.jpeg")
    broken = copy.deepcopy(event["Records"][0])
    broken["messageId"], broken["body"] = "broken", "{not json"
    event["Records"].append(broken)
    assert invoke(handler, event) == {"batchItemFailures": [{"itemIdentifier": "broken"}]}
    assert prediction_key(DATASET, KEYS[0]) in keys_under(s3, "predictions/")


def test_unsure_images_are_copied_to_review_with_their_result(s3, model_v1, monkeypatch):
    publish(s3, model_v1, "v1")
    monkeypatch.setenv("REVIEW_THRESHOLD", "0.99")  # the untrained fixture is never that sure
    handler = load_handler_module()
    uploads = {key: jpeg_bytes(seed=i) for i, key in enumerate(KEYS)}
    for key, data in uploads.items():
        upload(s3, key, data)
    event = load_event("inference-sqs-s3-unlabeled.json")
    assert invoke(handler, event) == {"batchItemFailures": []}
    names = [key.rsplit("/", 1)[1] for key in KEYS]
    assert keys_under(s3, "review/") == sorted(
        k for name in names for k in (review_key(DATASET, name), review_json_key(DATASET, name))
    )
    for key, name in zip(KEYS, names, strict=True):
        assert read(s3, review_key(DATASET, name)) == uploads[key]  # the bytes that were classified
        beside = json.loads(read(s3, review_json_key(DATASET, name)))
        result = json.loads(read(s3, prediction_key(DATASET, key)))
        assert beside == result
        assert result["needs_review"] is True and result["review_reason"] == "low_confidence"
        assert result["confidence"] == result["probabilities"][result["label"]] < 0.99
        assert result["review_key"] == review_key(DATASET, name)
    [batch_file] = [k for k in keys_under(s3, "predictions/") if k.endswith("prediction_output.txt")]
    lines = read(s3, batch_file).decode().splitlines()
    assert sorted(line.rsplit(" ", 2)[0] for line in lines) == sorted(names)
    assert all(line.endswith(" needs_review") and line.rsplit(" ", 2)[1] in LABELS for line in lines)
    assert keys_under(s3, "incoming/unlabeled/") == sorted(KEYS)  # the upload itself stays

    before = {k: read(s3, k) for k in keys_under(s3, "review/") + keys_under(s3, "predictions/")}
    assert invoke(handler, event) == {"batchItemFailures": []}  # the same event twice: one result
    after = {k: read(s3, k) for k in keys_under(s3, "review/") + keys_under(s3, "predictions/")}
    assert after == before


def test_only_the_unsure_image_goes_to_review(s3, model_v1, monkeypatch):
    publish(s3, model_v1, "v1")
    classifier = TFLiteClassifier.from_dir(model_v1)
    uploads = {key: jpeg_bytes(seed=i) for i, key in enumerate(KEYS)}
    confidence = {key: classifier.predict_bytes(data).confidence for key, data in uploads.items()}
    unsure, sure = sorted(KEYS, key=confidence.get)
    assert confidence[unsure] < confidence[sure]
    monkeypatch.setenv("REVIEW_THRESHOLD", str((confidence[unsure] + confidence[sure]) / 2))
    handler = load_handler_module()
    for key, data in uploads.items():
        upload(s3, key, data)
    assert invoke(handler, load_event("inference-sqs-s3-unlabeled.json")) == {"batchItemFailures": []}
    name = unsure.rsplit("/", 1)[1]
    assert keys_under(s3, "review/") == [review_key(DATASET, name), review_json_key(DATASET, name)]
    assert json.loads(read(s3, prediction_key(DATASET, sure)))["needs_review"] is False
    assert json.loads(read(s3, prediction_key(DATASET, sure)))["review_key"] is None
    [batch_file] = [k for k in keys_under(s3, "predictions/") if k.endswith("prediction_output.txt")]
    marked = [line for line in read(s3, batch_file).decode().splitlines() if line.endswith(" needs_review")]
    assert [line.rsplit(" ", 2)[0] for line in marked] == [name]
