"""The API Gateway side of the inference function, driven by the events in events/ on moto S3."""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np
import pytest

from medimage.core.preprocess import PreprocessSpec, load_image_array
from medimage.inference.decode import decode_image

from .conftest import BUCKET, DATASET, LABELS, api_event, call_api, invoke, jpeg_bytes, load_event, publish

PNG_1x1 = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAAAAAA6fptVAAAACklEQVR4nGNgAAAAAgABSK+kcQAAAABJRU5ErkJggg=="
)


def assert_prediction(status: int, body: dict[str, Any], version: str = "v1") -> None:
    assert status == 200, body
    assert set(body) == {
        "label",
        "probabilities",
        "confidence",
        "needs_review",
        "review_reason",
        "model_version",
        "latency_ms",
    }  # no heatmap key without ?explain
    assert body["label"] in LABELS
    assert set(body["probabilities"]) == set(LABELS)
    assert abs(sum(body["probabilities"].values()) - 1) < 1e-3
    assert body["label"] == max(body["probabilities"], key=body["probabilities"].get)
    assert body["confidence"] == body["probabilities"][body["label"]]
    assert body["needs_review"] is False and body["review_reason"] is None  # the fixture has no threshold
    assert body["model_version"] == version
    assert body["latency_ms"] > 0


def test_binary_event(handler, s3, model_v1):
    publish(s3, model_v1, "v1")
    event = load_event("inference-api-predict-binary.json")
    assert event["isBase64Encoded"] is True
    status, body = call_api(handler, event)
    assert_prediction(status, body)


def test_json_event_gives_the_same_answer_as_binary(handler, s3, model_v1):
    publish(s3, model_v1, "v1")
    binary = call_api(handler, load_event("inference-api-predict-binary.json"))[1]
    event = load_event("inference-api-predict-json.json")
    assert json.loads(event["body"])["image"] == load_event("inference-api-predict-binary.json")["body"]
    status, body = call_api(handler, event)
    assert_prediction(status, body)
    assert body["probabilities"] == binary["probabilities"]


def test_full_resolution_xray(handler, s3, model_v1, fullres_xray):
    publish(s3, model_v1, "v1")
    data = fullres_xray.read_bytes()
    assert_prediction(*call_api(handler, api_event(data)))
    assert_prediction(
        *call_api(
            handler, api_event(json.dumps({"image": base64.b64encode(data).decode()}), "application/json")
        )
    )


@pytest.mark.parametrize("size", [64, 224])
def test_serving_decode_is_the_training_preprocessing(fullres_xray, size):
    """Draft-mode decoding in serving gives exactly the array the trainer's loader gives."""
    spec = PreprocessSpec(image_size=size, channels=1)
    data = fullres_xray.read_bytes()
    np.testing.assert_array_equal(decode_image(data, spec), load_image_array(data, spec))


def form(
    *parts: tuple[str, str | None, bytes], boundary: str = "medimage-test-boundary"
) -> tuple[bytes, str]:
    """A multipart/form-data body of (field name, file name or None, content) parts, as curl -F sends it."""
    chunks = []
    for name, filename, content in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        kind = "Content-Type: application/octet-stream\r\n" if filename else ""
        chunks.append(f"--{boundary}\r\nContent-Disposition: {disposition}\r\n{kind}\r\n".encode() + content)
    body = b"\r\n".join(chunks) + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def test_multipart_upload_gives_the_same_answer_as_the_raw_body(handler, s3, model_v1, fullres_xray):
    publish(s3, model_v1, "v1")
    data = fullres_xray.read_bytes()
    raw = call_api(handler, api_event(data, "image/jpeg"))[1]
    body, content_type = form(("dataset", None, DATASET.encode()), ("file", "scan.jpeg", data))
    status, got = call_api(handler, api_event(body, content_type))
    assert_prediction(status, got)
    assert got["probabilities"] == raw["probabilities"]


def test_octet_stream_is_sniffed_not_trusted(handler, s3, model_v1):
    publish(s3, model_v1, "v1")
    assert_prediction(*call_api(handler, api_event(jpeg_bytes(), "application/octet-stream")))
    assert_prediction(*call_api(handler, api_event(jpeg_bytes(), "image/png")))


def _big_jpeg() -> bytes:
    return jpeg_bytes((400, 400), quality=100)


BAD_INPUTS = [
    # (id, body, content type, query, status, code)
    ("bad-json", '{"image": ', "application/json", None, 400, "bad_json"),
    ("json-not-object", "[1, 2]", "application/json", None, 400, "bad_json"),
    ("json-without-image", '{"dataset": "chestxray2017"}', "application/json", None, 400, "missing_image"),
    ("json-image-not-string", '{"image": 42}', "application/json", None, 400, "missing_image"),
    ("bad-base64", '{"image": "@@not base64!"}', "application/json", None, 400, "bad_base64"),
    ("json-empty-image", '{"image": ""}', "application/json", None, 400, "empty"),
    (
        "json-dataset-not-string",
        json.dumps({"image": base64.b64encode(PNG_1x1).decode(), "dataset": 5}),
        "application/json",
        None,
        400,
        "bad_dataset",
    ),
    ("empty-body", None, "image/jpeg", None, 400, "empty"),
    ("empty-string-body", "", "image/jpeg", None, 400, "empty"),
    ("not-an-image", b"hello, this is a text file and not an X-ray", "image/jpeg", None, 415, "not_an_image"),
    ("truncated-jpeg", jpeg_bytes()[:700], "image/jpeg", None, 400, "truncated"),
    (
        "corrupt-jpeg",
        b"\xff\xd8\xff\xe0" + b"\x13" * 600 + b"\xff\xd9",
        "image/jpeg",
        None,
        400,
        "unreadable",
    ),
    ("too-small", PNG_1x1, "image/png", None, 400, "too_small"),
    ("form-without-file", *form(("dataset", None, b"chestxray2017")), None, 400, "missing_image"),
    (
        "form-two-files",
        *form(("a", "a.jpeg", jpeg_bytes()), ("b", "b.jpeg", jpeg_bytes())),
        None,
        400,
        "too_many_files",
    ),
    ("form-no-boundary", b"--x\r\n\r\nabc", "multipart/form-data", None, 400, "bad_multipart"),
    (
        "form-file-not-an-image",
        *form(("file", "notes.txt", b"not an image at all, text")),
        None,
        415,
        "not_an_image",
    ),
    ("too-large", "BIG", "image/jpeg", None, 413, "too_large"),
    ("unknown-dataset", jpeg_bytes(), "image/jpeg", {"dataset": "mri-knee"}, 400, "unknown_dataset"),
    ("bad-dataset-name", jpeg_bytes(), "image/jpeg", {"dataset": "../secrets"}, 400, "bad_dataset"),
]


@pytest.mark.parametrize(
    ("body", "content_type", "query", "status", "code"),
    [case[1:] for case in BAD_INPUTS],
    ids=[case[0] for case in BAD_INPUTS],
)
def test_bad_input_is_a_4xx_json_error(
    handler, s3, model_v1, monkeypatch, body, content_type, query, status, code
):
    publish(s3, model_v1, "v1")
    if body == "BIG":
        body = _big_jpeg()
        monkeypatch.setenv("MAX_REQUEST_BYTES", str(len(body) - 1))
        handler.service.cache_clear()
    got_status, got = call_api(handler, api_event(body, content_type, query))
    assert (got_status, got["error"]["code"]) == (status, code), got
    assert got["error"]["message"]


def test_too_large_base64_json_body(handler, s3, model_v1, monkeypatch):
    publish(s3, model_v1, "v1")
    monkeypatch.setenv("MAX_REQUEST_BYTES", "1000")
    body = json.dumps({"image": base64.b64encode(_big_jpeg()).decode()})
    status, got = call_api(handler, api_event(body, "application/json"))
    assert (status, got["error"]["code"]) == (413, "too_large")


def test_unknown_route_is_a_json_404(handler, s3):
    status, body = call_api(handler, api_event(None, None, method="GET", path="/nothing-here"))
    assert status == 404 and body["error"]["code"] == "not_found"


def test_503_without_a_production_model(handler, s3):
    status, body = call_api(handler, load_event("inference-api-predict-binary.json"))
    assert status == 503
    assert body["error"]["code"] == "no_model"
    assert "no production model" in body["error"]["message"]


def test_hot_reload_when_the_pointer_changes(handler, s3, model_v1, model_v2):
    event = load_event("inference-api-predict-binary.json")
    publish(s3, model_v1, "v1")
    first = call_api(handler, event)[1]
    publish(s3, model_v2, "v2")
    status, second = call_api(handler, event)
    assert_prediction(status, second, version="v2")
    assert first["model_version"] == "v1"
    assert second["probabilities"] != first["probabilities"]


def test_pointer_is_not_rechecked_within_the_interval(handler, s3, model_v1, model_v2, monkeypatch):
    monkeypatch.setenv("MODEL_CHECK_INTERVAL_S", "3600")
    event = load_event("inference-api-predict-binary.json")
    publish(s3, model_v1, "v1")
    assert call_api(handler, event)[1]["model_version"] == "v1"
    publish(s3, model_v2, "v2")
    assert call_api(handler, event)[1]["model_version"] == "v1"


@pytest.mark.parametrize("corruption", ["sha-mismatch", "not-a-model"])
def test_corrupt_new_model_is_refused_and_the_old_one_keeps_serving(
    handler, s3, model_v1, model_v2, corruption
):
    event = load_event("inference-api-predict-binary.json")
    publish(s3, model_v1, "v1")
    assert call_api(handler, event)[1]["model_version"] == "v1"
    if corruption == "sha-mismatch":  # the upload was cut short: bytes differ from the promoted hash
        publish(s3, model_v2, "v2", payload=(model_v2 / "model.tflite").read_bytes()[:5000])
    else:  # the hash matches, but the bytes are no TFLite model
        junk = b"this is not a flatbuffer" * 100
        import hashlib

        publish(s3, model_v2, "v2", payload=junk, pointer_sha=hashlib.sha256(junk).hexdigest())
    status, body = call_api(handler, event)
    assert_prediction(status, body, version="v1")
    health = call_api(handler, load_event("inference-api-health.json"))[1]
    assert health["datasets"][DATASET] == {
        "model_version": "v1",
        "variant": "float",  # model.tflite serves
        "trained_at": "2026-11-25T00:00:00+00:00",
        "review_threshold": None,
        "review_thresholds": None,
        "explain": True,
    }


def test_corrupt_first_model_is_a_clear_503(handler, s3, model_v1):
    publish(s3, model_v1, "v1", payload=b"\x00" * 100)
    status, body = call_api(handler, load_event("inference-api-predict-binary.json"))
    assert status == 503 and body["error"]["code"] == "model_unavailable"
    assert "v1 was refused" in body["error"]["message"] and "sha256" in body["error"]["message"]


def test_health_and_page(handler, s3, model_v1):
    status, health = call_api(handler, load_event("inference-api-health.json"))
    assert status == 200 and health["status"] == "ok" and health["default_dataset"] == DATASET
    page = invoke(handler, load_event("inference-api-index.json"))
    assert page["statusCode"] == 200
    headers = {**page.get("headers", {}), **{k: v[0] for k, v in page.get("multiValueHeaders", {}).items()}}
    assert headers["Content-Type"].startswith("text/html")
    assert 'type="file"' in page["body"] and "predict" in page["body"]


def test_bucket_name_matches_the_events():
    body = json.loads(load_event("inference-sqs-s3-unlabeled.json")["Records"][0]["body"])
    assert body["Records"][0]["s3"]["bucket"]["name"] == BUCKET
