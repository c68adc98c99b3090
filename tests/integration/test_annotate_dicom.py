"""Annotate on the emulated AWS with DICOM uploads: patient grouping from the header, acquisition rules,
and no PHI in anything the pipeline writes or logs."""

from __future__ import annotations

import inspect
import json
import logging
import sys
from pathlib import Path

import boto3
import numpy as np
import pytest

from medimage.adapters.catalog import DynamoCatalog

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from dicom_factory import PATIENT_ID, PHI_VALUES, make_dicom

DS = "chestxray2017-binary"


def xray(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 4096, size=(64, 80), dtype=np.uint16)


def upload(env, name: str, data: bytes, folder: str = "PNEUMONIA") -> str:
    key = f"incoming/labeled/{DS}/{folder}/{name}"
    boto3.client("s3").put_object(Bucket=env.bucket, Key=key, Body=data)
    return key


def everything_written(env) -> str:
    """Every object in the bucket and every catalog item, as text."""
    s3 = boto3.client("s3")
    texts = []
    for item in s3.list_objects_v2(Bucket=env.bucket).get("Contents", []):
        if item["Key"].endswith((".json", ".csv", ".txt")):
            texts.append(s3.get_object(Bucket=env.bucket, Key=item["Key"])["Body"].read().decode())
        texts.append(item["Key"])
    items = boto3.client("dynamodb").scan(TableName=env.table)["Items"]
    return "\n".join(texts) + json.dumps(items)


def test_dicom_is_catalogued_under_a_pseudonymous_patient_and_leaves_no_phi(local_aws, caplog, service_log):
    # Everything the pipeline logs (botocore's own DEBUG lines would echo the test's upload bodies).
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.DEBUG, logger="medimage")
    annotate = inspect.getmodule(local_aws.functions["AnnotateFunction"].load())
    function_log = service_log(annotate.logger)
    # GIVEN two 12-bit DICOM X-rays of one patient under unrelated file names, and one of another patient
    first = upload(local_aws, "scan-a.dcm", make_dicom(xray(1), bits_stored=12))
    second = upload(local_aws, "scan-b.dcm", make_dicom(xray(2), bits_stored=12))
    other = upload(local_aws, "scan-c.dcm", make_dicom(xray(3), bits_stored=12, patient_id="PID-77777"))
    # WHEN they are annotated
    assert local_aws.pump().failed_messages == 0
    # THEN each is catalogued; the patient is a keyed hash of the header's PatientID, shared by its images
    records = {r.key: r for r in DynamoCatalog(local_aws.table).snapshot(DS).records}
    assert set(records) == {first, second, other}
    assert records[first].format == "dicom" and records[first].label == "pneumonia"
    assert records[first].patient_id == records[second].patient_id != records[other].patient_id
    assert records[first].patient_id.startswith("dcm-")
    assert records[first].group == records[second].group == f"patient:{records[first].patient_id}"
    # AND no name, id, birth date or accession number appears in the bucket, the catalog or the logs
    written = everything_written(local_aws)
    logs = caplog.text + function_log.getvalue()
    assert "annotated" in logs  # the handler's log lines were captured
    for value in PHI_VALUES:
        assert value not in written and value not in logs, value
    assert PATIENT_ID not in written


@pytest.mark.parametrize(
    ("tags", "code"),
    [
        ({"view_position": "LL"}, "dicom_wrong_view"),
        ({"modality": "MR"}, "dicom_wrong_modality"),
        ({"body_part": "KNEE"}, "dicom_wrong_body_part"),
        ({"frames": 3}, "dicom_multiframe"),
        ({"with_pixels": False}, "dicom_no_pixels"),
    ],
)
def test_a_dicom_the_dataset_does_not_take_is_quarantined_with_a_reason(local_aws, tags, code):
    key = upload(local_aws, "lateral.dcm", make_dicom(xray(4), bits_stored=12, **tags))
    assert local_aws.pump().failed_messages == 0
    reason_key = f"quarantine/{DS}/{key}.reason.json"
    reason = json.loads(boto3.client("s3").get_object(Bucket=local_aws.bucket, Key=reason_key)["Body"].read())
    assert reason["code"] == code and reason["original_key"] == key and reason["message"]
    assert DynamoCatalog(local_aws.table).snapshot(DS).records == []
