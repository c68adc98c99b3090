"""STOW-RS through the inference handler on moto S3: instances stored for drop-to-label, every bad input
answered as PS3.18 says and quarantined, and the SR sent back to a PACS that does not answer."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np
import pydicom
import pytest

from medimage.core.dicomweb import PRIVATE_CODE_TAG, multipart_related
from medimage.core.layout import prediction_key, result_sr_key
from medimage.local.log_format import apply_json_log_format

from .conftest import BUCKET, DATASET, LABELS, api_event, invoke, json_lines, publish
from .test_drop_to_label import keys_under, read, sqs_event

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from dicom_factory import PHI_VALUES, make_dicom, reference_image


def xray(**kwargs: Any) -> bytes:
    return make_dicom(reference_image(48, 64), **kwargs)


def stow(handler: Any, instances: list[bytes], path: str = "/studies", query: dict[str, str] | None = None):
    content_type, body = multipart_related(instances)
    response = invoke(handler, api_event(body, content_type, query=query, path=path))
    assert response["headers"]["Content-Type"] == "application/dicom+json"
    return response["statusCode"], json.loads(response["body"])


def failures(doc: dict[str, Any]) -> list[str]:
    return [item[PRIVATE_CODE_TAG]["Value"][0] for item in doc.get("00081198", {}).get("Value", [])]


def stored_keys(doc: dict[str, Any]) -> list[str]:
    urls = [item["00081190"]["Value"][0] for item in doc.get("00081199", {}).get("Value", [])]
    return [url.removeprefix(f"s3://{BUCKET}/") for url in urls]


def reasons(s3: Any) -> list[dict[str, Any]]:
    return [json.loads(read(s3, k)) for k in keys_under(s3, "quarantine/") if k.endswith(".reason.json")]


def test_stored_instances_go_through_drop_to_label_and_get_an_sr(handler, s3, model_v1):
    publish(s3, model_v1, "v1")
    first, second = xray(), xray()
    status, doc = stow(handler, [first, second])
    assert status == 200 and failures(doc) == []
    keys = stored_keys(doc)
    assert len(keys) == 2 and all(k.startswith(f"incoming/unlabeled/{DATASET}/stow/") for k in keys)
    assert read(s3, keys[0]) == first
    # the same instance again lands on the same key
    assert stored_keys(stow(handler, [first])[1]) == keys[:1]
    # the bucket's event runs drop-to-label on them
    assert invoke(handler, sqs_event(*keys)) == {"batchItemFailures": []}
    for key in keys:
        assert json.loads(read(s3, prediction_key(DATASET, key)))["label"] in LABELS
    sr = hd.sr.srread(io.BytesIO(read(s3, result_sr_key(DATASET, keys[0]))))
    assert sr.StudyInstanceUID == pydicom.dcmread(io.BytesIO(first)).StudyInstanceUID


def test_the_dataset_comes_from_the_path_the_query_or_the_acquisition(handler, s3):
    oct_scan = xray(modality="OPT", body_part="EYE", view_position="")
    assert stored_keys(stow(handler, [oct_scan])[1])[0].startswith("incoming/unlabeled/oct2017/stow/")
    path = "/datasets/chestxray2017-binary/studies"
    assert stored_keys(stow(handler, [xray()], path)[1])[0].startswith(
        "incoming/unlabeled/chestxray2017-binary/"
    )
    query = {"dataset": "chestxray2017-binary"}
    assert stored_keys(stow(handler, [xray()], query=query)[1])[0].startswith(
        "incoming/unlabeled/chestxray2017-binary/"
    )
    # a chest dataset named explicitly refuses an OCT scan
    status, doc = stow(handler, [oct_scan], path)
    assert status == 409 and failures(doc) == ["dicom_wrong_modality"]


@pytest.mark.parametrize(
    ("content_type", "body", "status", "code"),
    [
        ("image/jpeg", b"\xff\xd8\xff not multipart", 415, "unsupported_media_type"),
        ('multipart/related; type="image/jpeg"; boundary=b', b"--b\r\n\r\nx\r\n--b--\r\n", 415, None),
        ('multipart/related; type="application/dicom"', b"no boundary at all", 400, "bad_multipart"),
    ],
)
def test_a_request_that_is_not_dicom_multipart_is_refused_whole(
    handler, s3, content_type, body, status, code
):
    response = invoke(handler, api_event(body, content_type, path="/studies"))
    doc = json.loads(response["body"])
    assert response["statusCode"] == status
    assert failures(doc) == [code or "unsupported_media_type"]
    assert keys_under(s3, "incoming/") == [] and keys_under(s3, "quarantine/") == []


def test_each_bad_instance_fails_with_its_reason_and_is_quarantined(handler, s3, monkeypatch):
    monkeypatch.setenv("MAX_REQUEST_BYTES", "200000")
    big = make_dicom(np.zeros((400, 600), dtype=np.uint8))
    assert len(big) > 200_000
    good = xray()
    other_study = xray()
    parts = [good, b"plain text, not DICOM", xray(with_pixels=False), xray(frames=3), big, other_study]
    content_type, body = multipart_related(parts)
    # one part declares another media type
    body = body.replace(b"application/dicom\r\n\r\nplain text", b"text/plain\r\n\r\nplain text", 1)
    study = pydicom.dcmread(io.BytesIO(good)).StudyInstanceUID
    response = invoke(handler, api_event(body, content_type, path=f"/studies/{study}"))
    doc = json.loads(response["body"])
    assert response["statusCode"] == 202
    assert failures(doc) == [
        "not_dicom",
        "dicom_no_pixels",
        "dicom_multiframe",
        "too_large",
        "study_mismatch",
    ]
    failed = doc["00081198"]["Value"]
    assert failed[0]["00081155"] == {"vr": "UI"}  # nothing to name it by
    assert all(item["00081155"].get("Value") for item in failed[1:])
    assert [item["00081197"]["Value"][0] for item in failed] == [0xC000, 0xA900, 0x0122, 0xA700, 0xC409]
    # nothing is lost: one stored, five quarantined with their reasons
    assert len(stored_keys(doc)) == 1
    assert sorted(r["code"] for r in reasons(s3)) == sorted(failures(doc))
    assert all(r["stage"] == "stow" for r in reasons(s3))
    assert len([k for k in keys_under(s3, "quarantine/") if not k.endswith(".reason.json")]) == 5


def test_a_request_of_bad_instances_only_is_a_conflict_and_the_logs_carry_no_phi(handler, s3, capsys):
    apply_json_log_format(handler, "INFO")
    capsys.readouterr()
    status, doc = stow(handler, [xray(frames=2), b"\x00" * 200])
    assert status == 409 and failures(doc) == ["dicom_multiframe", "dicom_unreadable"]
    out = capsys.readouterr().out
    rejected = [line for line in json_lines(out) if line["message"] == "rejected"]
    assert [(line["source"], line["code"]) for line in rejected] == [
        ("stow", "dicom_multiframe"),
        ("stow", "dicom_unreadable"),
    ]
    assert not any(value in out for value in PHI_VALUES)
    assert not any(value in json.dumps(r) for r in reasons(s3) for value in PHI_VALUES)


def test_an_unreachable_pacs_leaves_a_failure_record_and_the_prediction(
    handler, s3, model_v1, monkeypatch, capsys
):
    import socket

    with socket.socket() as probe:  # a port nothing listens on: connection refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("PACS_STOW_URL", f"http://127.0.0.1:{port}/dicom-web")
    publish(s3, model_v1, "v1")
    apply_json_log_format(handler, "INFO")
    [key] = stored_keys(stow(handler, [xray()])[1])
    capsys.readouterr()
    assert invoke(handler, sqs_event(key)) == {"batchItemFailures": []}
    result = json.loads(read(s3, prediction_key(DATASET, key)))
    assert result["label"] in LABELS
    [failure_key] = keys_under(s3, "pacs/failed/")
    record = json.loads(read(s3, failure_key))
    assert record["code"] == "pacs_unavailable" and record["attempts"] == 3
    assert record["sr_key"] == result["results"]["sr_key"] and record["result_key"] == prediction_key(
        DATASET, key
    )
    lines = json_lines(capsys.readouterr().out)
    [failed] = [line for line in lines if line.get("message") == "pacs_push_failed"]
    assert failed["code"] == "pacs_unavailable" and failed["dataset"] == DATASET
    assert not any(value in json.dumps(lines) for value in PHI_VALUES)


def test_without_a_data_bucket_stow_says_so(s3, model_v1, monkeypatch):
    """`medimage serve --model` has no bucket to store into: a 503 with its code, not a 500."""
    from medimage.local.functions import load_handler_module

    monkeypatch.delenv("DATA_BUCKET")
    monkeypatch.setenv("MEDIMAGE_MODEL", str(model_v1 / "model.tflite"))
    content_type, body = multipart_related([xray()])
    response = invoke(load_handler_module(), api_event(body, content_type, path="/studies"))
    assert response["statusCode"] == 503
    assert json.loads(response["body"])["error"]["code"] == "no_store"
