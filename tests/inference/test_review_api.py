"""The review worklist of the inference API, through the handler on moto S3: items queued by drop-to-label
are listed least confident first, shown with their image and heatmap, and labelled with the caller's
identity from the API's auth; every bad request is a stable code."""

from __future__ import annotations

import base64
import io
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from PIL import Image

from medimage.core.layout import prediction_key, review_json_key, review_key, review_sr_key
from medimage.core.presets import get_preset
from medimage.inference.review import labeled_key_for
from medimage.local.apigateway import caller_identity, local_api_key_id, to_proxy_event

from .conftest import DATASET, LABELS, api_event, call_api, invoke, jpeg_bytes, publish
from .test_drop_to_label import keys_under, read, sqs_event, upload
from .test_trial import nominate

LABELED = f"incoming/labeled/{DATASET}/"
KEY_ID = "a1b2c3d4e5"
USER_ARN = "arn:aws:iam::123456789012:user/ann.smith"
# The file names the chestxray2017 preset reads: a patient id and a class word.
NAMES = ["person1_bacteria_1.jpeg", "person2_virus_2.jpeg", "IM-0003-0001.jpeg"]


def review_event(
    method: str,
    path: str,
    query: dict[str, str] | None = None,
    body: Any = None,
    key_id: str | None = KEY_ID,
    user_arn: str | None = None,
) -> dict[str, Any]:
    """A request to a review route as API Gateway passes it, with the identity its auth fills in."""
    text = body if isinstance(body, str) or body is None else json.dumps(body)
    event = api_event(text, "application/json" if text else None, query, method, path)
    event["requestContext"]["identity"].update(apiKeyId=key_id, userArn=user_arn)
    return event


@pytest.fixture
def queue(handler: ModuleType, s3: Any, model_v1: Any, monkeypatch: pytest.MonkeyPatch) -> dict[str, dict]:
    """Three X-rays dropped into incoming/unlabeled/ and sent to review (the untrained model is never
    0.99 sure); {name: its result JSON}."""
    monkeypatch.setenv("REVIEW_THRESHOLD", "0.99")
    publish(s3, model_v1, "v1")
    keys = [f"incoming/unlabeled/{DATASET}/{name}" for name in NAMES]
    for i, key in enumerate(keys):
        upload(s3, key, jpeg_bytes((96 + 16 * i, 80), seed=i))
    assert invoke(handler, sqs_event(*keys)) == {"batchItemFailures": []}
    return {name: json.loads(read(s3, review_json_key(DATASET, name))) for name in NAMES}


def label(handler: ModuleType, name: str, label_: str, **identity: Any) -> tuple[int, dict[str, Any]]:
    body = {"dataset": DATASET, "name": name, "label": label_}
    return call_api(handler, review_event("POST", "/review/label", body=body, **identity))


def test_the_worklist_is_the_queue_least_confident_first(handler, queue):
    status, body = call_api(handler, review_event("GET", "/review", {"dataset": DATASET}))
    assert status == 200, body
    assert body["dataset"] == DATASET and body["classes"] == LABELS
    expected = sorted(NAMES, key=lambda n: queue[n]["confidence"])
    assert [item["name"] for item in body["items"]] == expected
    for item in body["items"]:
        record = queue[item["name"]]
        assert set(item) == {
            "name",
            "label",
            "probabilities",
            "confidence",
            "review_reason",
            "model_version",
            "predicted_at",
        }  # no object keys, no source identity
        assert (item["label"], item["confidence"], item["probabilities"]) == (
            record["label"],
            record["confidence"],
            record["probabilities"],
        )
        assert item["review_reason"] == "low_confidence" and item["model_version"] == "v1"
    # Without ?dataset the function's default dataset is listed.
    assert call_api(handler, review_event("GET", "/review"))[1] == body


def test_an_item_comes_with_its_image_and_the_heatmap(handler, s3, queue):
    name = NAMES[1]
    status, body = call_api(handler, review_event("GET", "/review/item", {"name": name}))
    assert status == 200, body
    prefix, data = body["image"].split(",", 1)
    assert prefix == "data:image/jpeg;base64"
    assert base64.b64decode(data) == read(s3, review_key(DATASET, name))
    assert body["label"] == queue[name]["label"] and body["image_note"] is None
    heat = Image.open(io.BytesIO(base64.b64decode(body["heatmap"]["png_base64"])))
    assert heat.mode == "RGBA" and heat.size == (body["heatmap"]["width"], body["heatmap"]["height"])
    assert abs(heat.size[0] / heat.size[1] - 112 / 80) < 0.05  # the upload's aspect ratio
    assert body["heatmap_model_version"] == "v1" and body["heatmap_error"] is None


def test_confirm_and_modify_move_the_image_and_record_the_reviewer(handler, s3, queue):
    confirm, modify = NAMES[0], NAMES[1]
    images = {name: read(s3, review_key(DATASET, name)) for name in (confirm, modify)}
    model_label = queue[confirm]["label"]
    status, done = label(handler, confirm, model_label)
    assert status == 200, done
    assert done["verdict"] == "accepted" and done["reviewer"] == f"api-key:{KEY_ID}"
    assert done["model_label"] == model_label and done["labeled_key"].startswith(LABELED)
    other = next(c for c in LABELS if c != queue[modify]["label"])
    status, changed = label(handler, modify, other, key_id=None, user_arn=USER_ARN)
    assert status == 200, changed
    assert changed["verdict"] == "modified" and changed["reviewer"] == USER_ARN

    for name, answer in ((confirm, done), (modify, changed)):
        assert read(s3, answer["labeled_key"]) == images[name]  # the exact bytes that were reviewed
        source = f"incoming/unlabeled/{DATASET}/{name}"
        verdict = json.loads(read(s3, prediction_key(DATASET, source)))["review"]
        assert verdict["reviewer"] == answer["reviewer"] and verdict["verdict"] == answer["verdict"]
        assert verdict["label"] == answer["label"] and verdict["labeled_key"] == answer["labeled_key"]
        assert not keys_under(s3, review_key(DATASET, name))  # neither the image nor its JSON is left
    assert changed["labeled_key"] == labeled_key_for(get_preset(DATASET), DATASET, modify, other)
    left = call_api(handler, review_event("GET", "/review"))[1]["items"]
    assert [item["name"] for item in left] == [NAMES[2]]


def test_without_an_identity_nothing_is_listed_or_moved(handler, s3, queue):
    before = keys_under(s3, "")
    for event in (
        review_event("GET", "/review", key_id=None),
        review_event("GET", "/review/item", {"name": NAMES[0]}, key_id=None),
        review_event("POST", "/review/label", body={"name": NAMES[0], "label": "normal"}, key_id=""),
    ):
        status, body = call_api(handler, event)
        assert status == 401 and body["error"]["code"] == "no_identity", body
        assert "reviewer" in body["error"]["message"]
    assert keys_under(s3, "") == before


@pytest.mark.parametrize(
    ("method", "path", "query", "body", "status", "code"),
    [
        ("GET", "/review", {"dataset": "mammography"}, None, 400, "unknown_dataset"),
        ("GET", "/review", {"dataset": "../models"}, None, 400, "bad_dataset"),
        ("GET", "/review/item", {}, None, 400, "missing_field"),
        ("GET", "/review/item", {"name": "nobody.jpeg"}, None, 404, "not_in_review"),
        ("GET", "/review/item", {"name": NAMES[0] + ".json"}, None, 404, "not_in_review"),
        ("POST", "/review/label", None, {"name": "nobody.jpeg", "label": "normal"}, 404, "not_in_review"),
        (
            "POST",
            "/review/label",
            None,
            {"name": NAMES[0] + ".json", "label": "normal"},
            404,
            "not_in_review",
        ),
        ("POST", "/review/label", None, {"name": NAMES[0], "label": "pneumonia"}, 400, "unknown_label"),
        ("POST", "/review/label", None, {"name": NAMES[0], "label": "Normal"}, 400, "unknown_label"),
        ("POST", "/review/label", None, {"name": NAMES[0]}, 400, "missing_field"),
        ("POST", "/review/label", None, {"label": "normal"}, 400, "missing_field"),
        (
            "POST",
            "/review/label",
            None,
            {"name": NAMES[0], "label": "normal", "dataset": 7},
            400,
            "bad_dataset",
        ),
        (
            "POST",
            "/review/label",
            None,
            {"name": NAMES[0], "label": "normal", "dataset": "x-ray"},
            400,
            "unknown_dataset",
        ),
        ("POST", "/review/label", None, '{"name": "a.jpeg", "label": ', 400, "bad_json"),
        ("POST", "/review/label", None, '["a.jpeg", "normal"]', 400, "bad_json"),
        ("POST", "/review/label", None, None, 400, "empty"),
    ],
)
def test_bad_requests_get_a_stable_code_and_move_nothing(
    handler, s3, queue, method, path, query, body, status, code
):
    before = {key: read(s3, key) for key in keys_under(s3, "")}
    answer = call_api(handler, review_event(method, path, query, body))
    assert answer[0] == status and answer[1]["error"]["code"] == code, answer
    assert answer[1]["error"]["message"]
    assert {key: read(s3, key) for key in keys_under(s3, "")} == before


def test_an_item_labelled_already_is_no_longer_in_the_queue(handler, s3, queue):
    assert label(handler, NAMES[0], "normal")[0] == 200
    status, body = label(handler, NAMES[0], "viral")
    assert status == 404 and body["error"]["code"] == "not_in_review"
    assert "already labelled" in body["error"]["message"]
    assert len(keys_under(s3, LABELED)) == 1


def test_a_candidate_on_silent_trial_never_sees_the_worklist(handler, s3, queue, model_v2, monkeypatch):
    monkeypatch.setenv("CANDIDATE_SHARE", "1")
    monkeypatch.setenv("TRIAL_FLUSH_PAIRS", "1")
    nominate(s3, model_v2, "v2-candidate")
    listed = call_api(handler, review_event("GET", "/review"))[1]
    shown = call_api(handler, review_event("GET", "/review/item", {"name": NAMES[0]}))[1]
    done = label(handler, NAMES[1], "normal")[1]
    assert shown["heatmap_model_version"] == "v1"
    assert all("candidate" not in json.dumps(doc) for doc in (listed, shown, done))
    assert keys_under(s3, "trials/") == []


def test_without_a_data_bucket_the_worklist_is_unavailable(handler, monkeypatch):
    monkeypatch.setenv("DATA_BUCKET", "")
    status, body = call_api(handler, review_event("GET", "/review"))
    assert status == 503 and body["error"]["code"] == "no_store"


# ---------------------------------------------------------------- the local API gateway fills the identity


def test_the_local_gateway_fills_the_identity_of_an_api_key_or_a_signature():
    keyed = to_proxy_event("GET", "/review", {"x-api-key": "secret-1"}, b"")["requestContext"]["identity"]
    assert keyed["apiKeyId"] == local_api_key_id("secret-1") != local_api_key_id("secret-2")
    assert keyed["apiKey"] == "secret-1" and keyed["userArn"] is None
    signature = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261207/us-east-1/execute-api/aws4_request, ..."
    signed = caller_identity({"Authorization": signature})
    assert signed["accessKey"] == "AKIDEXAMPLE" and signed["userArn"].endswith(":user/AKIDEXAMPLE")
    assert signed["apiKeyId"] is None
    assert set(caller_identity({"Authorization": "Bearer x"}).values()) == {None}


def test_through_the_local_gateway_the_api_key_is_the_reviewer(handler, s3, queue):
    body = json.dumps({"name": NAMES[2], "label": "normal"}).encode()
    headers = {"Content-Type": "application/json", "x-api-key": "ward-3-key"}
    status, done = call_api(handler, to_proxy_event("POST", "/review/label", headers, body))
    assert status == 200, done
    assert done["reviewer"] == f"api-key:{local_api_key_id('ward-3-key')}"
    anonymous = to_proxy_event("GET", "/review", {}, b"")
    assert call_api(handler, anonymous)[1]["error"]["code"] == "no_identity"
    assert keys_under(s3, LABELED + "NORMAL/") == [LABELED + "NORMAL/" + NAMES[2]]


def test_a_dicom_item_shows_its_heatmap_alone_and_its_verdict_is_an_sr(handler, s3, model_v1, monkeypatch):
    from .test_dicom_inputs import pixels_of

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from dicom_factory import PHI_VALUES, make_dicom

    monkeypatch.setenv("REVIEW_THRESHOLD", "0.99")
    publish(s3, model_v1, "v1")
    key = f"incoming/unlabeled/{DATASET}/ward/scan-9.dcm"
    upload(s3, key, make_dicom(pixels_of(jpeg_bytes((120, 96))), bits_stored=8))
    assert invoke(handler, sqs_event(key)) == {"batchItemFailures": []}
    status, shown = call_api(handler, review_event("GET", "/review/item", {"name": "ward/scan-9.dcm"}))
    assert status == 200, shown
    assert shown["image"] is None and "DICOM" in shown["image_note"]
    assert (shown["heatmap"]["width"], shown["heatmap"]["height"]) == (256, 205)  # the scan's 120 x 96
    status, done = label(handler, "ward/scan-9.dcm", "normal", key_id=None, user_arn=USER_ARN)
    assert status == 200, done
    result = json.loads(read(s3, prediction_key(DATASET, key)))
    assert result["review"]["reviewer"] == USER_ARN
    assert result["review"]["sr_key"] == review_sr_key(DATASET, key) and read(s3, review_sr_key(DATASET, key))
    answers = json.dumps([{k: v for k, v in shown.items() if k != "heatmap"}, done])  # base64 may hold "DOE"
    assert not [value for value in PHI_VALUES if value in answers]
