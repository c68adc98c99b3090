"""DICOM through the inference function: every content type of the API, drop-to-label, and no PHI in logs."""

from __future__ import annotations

import base64
import io
import json
import logging
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medimage.core.layout import prediction_key
from medimage.local.log_format import apply_json_log_format

from .conftest import BUCKET, DATASET, api_event, call_api, invoke, jpeg_bytes, load_event, publish
from .test_api import assert_prediction, form

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from dicom_factory import PHI_VALUES, make_dicom


def pixels_of(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("L"))


@pytest.fixture
def dicom() -> bytes:
    """An 8-bit MONOCHROME2 DICOM of the same pixels as ``jpeg_bytes()``'s decoded image."""
    return make_dicom(pixels_of(jpeg_bytes()), bits_stored=8)


def test_dicom_is_answered_for_every_content_type_with_one_answer(handler, s3, model_v1, dicom):
    publish(s3, model_v1, "v1")
    as_json = json.dumps({"image": base64.b64encode(dicom).decode()})
    body, multipart = form(("file", "scan.dcm", dicom))
    answers = []
    for event in (
        api_event(dicom, "application/dicom"),
        api_event(dicom, "application/octet-stream"),
        api_event(as_json, "application/json"),
        api_event(body, multipart),
    ):
        status, got = call_api(handler, event)
        assert_prediction(status, got)
        answers.append(got["probabilities"])
    assert all(a == answers[0] for a in answers)
    # The pixels are the JPEG's decoded pixels, so the DICOM is classified like the JPEG itself.
    jpeg_answer = call_api(handler, api_event(jpeg_bytes(), "image/jpeg"))[1]["probabilities"]
    assert max(abs(jpeg_answer[k] - answers[0][k]) for k in jpeg_answer) < 1e-6


@pytest.mark.parametrize(
    ("options", "status", "code"),
    [({"with_pixels": False}, 400, "dicom_no_pixels"), ({"frames": 2}, 415, "dicom_multiframe")],
)
def test_a_dicom_that_cannot_be_served_is_a_4xx_json_error(handler, s3, model_v1, options, status, code):
    publish(s3, model_v1, "v1")
    data = make_dicom(pixels_of(jpeg_bytes()), bits_stored=8, **options)
    got_status, got = call_api(handler, api_event(data, "application/dicom"))
    assert (got_status, got["error"]["code"]) == (status, code), got
    assert got["error"]["message"]


def test_no_phi_reaches_the_logs_or_the_answer(handler, s3, model_v1, dicom, caplog, capsys):
    caplog.set_level(logging.DEBUG, logger="medimage")
    caplog.set_level(logging.DEBUG, logger="pydicom")
    apply_json_log_format(handler, "DEBUG")  # the function's own lines, as Lambda writes them
    capsys.readouterr()
    publish(s3, model_v1, "v1")
    response = invoke(handler, api_event(dicom, "application/dicom"))
    no_pixels = invoke(
        handler, api_event(make_dicom(pixels_of(jpeg_bytes()), with_pixels=False), "application/dicom")
    )
    logged = capsys.readouterr().out
    text = caplog.text + logged + json.dumps(response) + json.dumps(no_pixels)
    assert "loaded model" in text and "dicom_no_pixels" in logged  # the function's own logs are here
    for value in PHI_VALUES:
        assert value not in text, value


def test_drop_to_label_labels_a_dicom(handler, s3, model_v1, dicom):
    publish(s3, model_v1, "v1")
    key = "incoming/unlabeled/chestxray2017/scan-17.dcm"
    s3.put_object(Bucket=BUCKET, Key=key, Body=dicom)
    event = load_event("inference-sqs-s3-unlabeled.json")
    record = event["Records"][0]
    body = json.loads(record["body"])
    body["Records"][0]["s3"]["object"]["key"] = key
    record["body"] = json.dumps(body)
    assert invoke(handler, {"Records": [record]}) == {"batchItemFailures": []}
    result = json.loads(s3.get_object(Bucket=BUCKET, Key=prediction_key(DATASET, key))["Body"].read())
    assert result["file"] == "scan-17.dcm" and result["model_version"] == "v1"
    written = json.dumps(result)
    for value in PHI_VALUES:
        assert value not in written


def test_drop_to_label_writes_an_sr_and_a_fhir_report_and_phi_only_there(
    handler, s3, model_v1, dicom, caplog, capsys
):
    """The SR and the FHIR report carry the patient because they must; the result JSON, the batch's
    prediction_output.txt and the function's logs still carry nothing of the header."""
    import pydicom
    from fhir.resources.R4B.diagnosticreport import DiagnosticReport

    from medimage.core.layout import result_fhir_key, result_sr_key
    from medimage.results.sr import read_report

    caplog.set_level(logging.DEBUG, logger="medimage")
    caplog.set_level(logging.DEBUG, logger="pydicom")
    apply_json_log_format(handler, "DEBUG")
    capsys.readouterr()
    publish(s3, model_v1, "v1")
    key = "incoming/unlabeled/chestxray2017/ward/scan-18.dcm"
    s3.put_object(Bucket=BUCKET, Key=key, Body=dicom)
    event = load_event("inference-sqs-s3-unlabeled.json")
    record = event["Records"][0]
    body = json.loads(record["body"])
    body["Records"][0]["s3"]["object"]["key"] = key
    record["body"] = json.dumps(body)
    assert invoke(handler, {"Records": [record]}) == {"batchItemFailures": []}
    logged = capsys.readouterr().out

    def read(k: str) -> bytes:
        return s3.get_object(Bucket=BUCKET, Key=k)["Body"].read()

    result = json.loads(read(prediction_key(DATASET, key)))
    assert result["results"]["sr_key"] == result_sr_key(DATASET, key)
    assert result["results"]["fhir_key"] == result_fhir_key(DATASET, key)
    sr = read(result["results"]["sr_key"])
    summary = read_report(sr)
    assert summary.probability == pytest.approx(result["probabilities"][result["label"]], abs=1e-6)
    assert summary.algorithm_version == "v1" and summary.needs_review == result["needs_review"]
    assert str(pydicom.dcmread(io.BytesIO(sr)).PatientName) == PHI_VALUES[0]  # the SR must name the patient
    report = DiagnosticReport.model_validate_json(read(result["results"]["fhir_key"]))
    assert report.subject.identifier.value == PHI_VALUES[3]
    batch = read(result["batch_output_key"]).decode()
    assert "scan-18.dcm" in batch
    text = json.dumps(result) + batch + logged + caplog.text
    assert "prediction" in logged  # the function's own log lines are here
    for value in PHI_VALUES:
        assert value not in text, value
