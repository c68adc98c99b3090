"""The review loop in the local stack built from template.yaml: an unsure drop-to-label prediction waits in
review/, `medimage review label` moves it into incoming/labeled/, and annotate catalogues it as training
data under the clinician's label."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from medimage.adapters.catalog import DynamoCatalog
from medimage.cli.main import main
from medimage.core.layout import prediction_key, review_json_key, review_key
from medimage.local.environment import LocalAws

from .conftest import DATASET, fullres_images, jpeg_bytes, publish


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[LocalAws]:
    from moto import mock_aws

    monkeypatch.setenv("MEDIMAGE_BUCKET", "-")  # the command reads it; put back after the test
    monkeypatch.delenv("MEDIMAGE_BUCKET")
    with mock_aws():
        # ReviewThreshold as a deployment sets it: the untrained fixture model is never this sure.
        env = LocalAws(parameters={"ReviewThreshold": "0.99"}).create()
        monkeypatch.setenv("MODEL_CACHE_DIR", str(tmp_path / "models"))
        yield env


def test_an_unsure_prediction_becomes_training_data_under_the_clinicians_label(
    stack: LocalAws, model_v1: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    s3 = boto3.client("s3")
    publish(s3, model_v1, "v1", bucket=stack.bucket)
    images = fullres_images()
    data = images[0].read_bytes() if images else jpeg_bytes((320, 256), seed=5)
    upload = f"incoming/unlabeled/{DATASET}/person7_bacteria_1.jpeg"
    s3.put_object(Bucket=stack.bucket, Key=upload, Body=data)
    stack.pump()

    result_key = prediction_key(DATASET, upload)
    result = json.loads(s3.get_object(Bucket=stack.bucket, Key=result_key)["Body"].read())
    assert result["needs_review"] is True and result["review_reason"] == "low_confidence"
    name = "person7_bacteria_1.jpeg"
    assert s3.get_object(Bucket=stack.bucket, Key=review_key(DATASET, name))["Body"].read() == data
    assert s3.head_object(Bucket=stack.bucket, Key=review_json_key(DATASET, name))

    capsys.readouterr()
    assert main(["review", "list", "--dataset", DATASET, "--bucket", stack.bucket, "--json"]) == 0
    [item] = json.loads(capsys.readouterr().out)
    assert item["name"] == name and item["label"] == result["label"]

    code = main(["review", "label", name, "viral", "--dataset", DATASET, "--bucket", stack.bucket])
    assert code == 0, capsys.readouterr().err
    stack.pump()  # the copy's S3 event reaches annotate through its queue

    [record] = DynamoCatalog(stack.table).snapshot(DATASET).records
    assert record.key == f"incoming/labeled/{DATASET}/PNEUMONIA/person7_virus_1.jpeg"
    assert record.label == "viral" and record.patient_id == "person7"
    assert s3.list_objects_v2(Bucket=stack.bucket, Prefix="review/")["KeyCount"] == 0
    assert s3.list_objects_v2(Bucket=stack.bucket, Prefix="quarantine/")["KeyCount"] == 0
    after = json.loads(s3.get_object(Bucket=stack.bucket, Key=result_key)["Body"].read())
    assert after["review"]["label"] == "viral" and after["review"]["labeled_key"] == record.key
