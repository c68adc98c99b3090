"""Every function under `sam local invoke` (the local Lambda base image, SAM's runtime interface emulator),
talking to moto's server: the events of events/, the responses asserted. Run by `make test-sam`.

The tests build on each other in file order (annotate -> split; gate -> promote -> inference)."""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import pytest
from samdata import BUCKET, TABLE, build_model_dir, evaluation, load_event, model_tarball

DATASET = "chestxray2017"
LABELS = ["normal", "bacterial", "viral"]  # src/medimage/presets/chestxray2017.json
MANIFEST_VERSION = "sam-local-1"


def get_json(aws: dict[str, Any], key: str) -> Any:
    return json.loads(aws["s3"].get_object(Bucket=BUCKET, Key=key)["Body"].read())


def keys_under(aws: dict[str, Any], prefix: str) -> list[str]:
    pages = aws["s3"].get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def sqs_event(keys: list[str]) -> dict[str, Any]:
    """events/annotate-sqs-labeled-put.json with one record per key."""
    template = load_event("annotate-sqs-labeled-put.json")
    record = template["Records"][0]
    original = json.loads(record["body"])["Records"][0]["s3"]["object"]["key"]
    records = []
    for i, key in enumerate(keys):
        r = copy.deepcopy(record)
        r["messageId"] = f"{record['messageId'][:-4]}{i:04d}"
        r["body"] = record["body"].replace(original, key)
        records.append(r)
    return {"Records": records}


# ---------------------------------------------------------------- annotate
def test_annotate_accepts_a_valid_image(sam, aws, real_xray):
    event = load_event("annotate-sqs-labeled-put.json")
    key = json.loads(event["Records"][0]["body"])["Records"][0]["s3"]["object"]["key"]
    aws["s3"].put_object(Bucket=BUCKET, Key=key, Body=real_xray)

    response = sam.invoke("AnnotateFunction", event)

    assert response == {"batchItemFailures": []}
    aws["s3"].head_object(Bucket=BUCKET, Key=key)  # accepted images stay where they were uploaded
    items = aws["dynamodb"].scan(TableName=TABLE)["Items"]
    assert any(key in json.dumps(item) for item in items), "the image is catalogued"
    assert not [k for k in keys_under(aws, f"quarantine/{DATASET}/") if key.rsplit("/", 1)[1] in k]


def test_annotate_quarantines_a_bad_one(sam, aws):
    key = f"incoming/labeled/{DATASET}/NORMAL/NORMAL2-IM-9999-0001-broken.jpeg"
    aws["s3"].put_object(Bucket=BUCKET, Key=key, Body=b"this is not a JPEG")

    response = sam.invoke("AnnotateFunction", sqs_event([key]))

    assert response == {"batchItemFailures": []}, "a bad image is quarantined, not retried"
    quarantined = [k for k in keys_under(aws, f"quarantine/{DATASET}/") if "NORMAL2-IM-9999-0001-broken" in k]
    assert quarantined, keys_under(aws, "quarantine/")


# ---------------------------------------------------------------- split
def test_split_writes_manifests_and_starts_training(sam, aws):
    from medimage.core.presets import get_preset
    from medimage.local.synthetic import generate

    files = generate(get_preset(DATASET), per_class=4, size=32, seed=3)
    keys = []
    for f in files:
        keys.append(f"incoming/labeled/{DATASET}/{f.folder}/{f.filename}")
        aws["s3"].put_object(Bucket=BUCKET, Key=keys[-1], Body=f.data)
    assert sam.invoke("AnnotateFunction", sqs_event(keys)) == {"batchItemFailures": []}

    sam.invoke("SplitFunction", load_event("split-eventbridge-commit.json"))

    latest = get_json(aws, f"manifests/{DATASET}/latest.json")
    prefix = f"manifests/{DATASET}/{latest['version']}/"
    written = set(keys_under(aws, prefix))
    for split in ("train", "val", "test"):
        assert f"{prefix}{split}.csv" in written and f"{prefix}{split}.manifest" in written, written
    header = (
        aws["s3"].get_object(Bucket=BUCKET, Key=f"{prefix}train.csv")["Body"].read().decode().splitlines()[0]
    )
    assert header == "key,label,sha256,patient_id"
    stats = get_json(aws, f"{prefix}stats.json")
    assert stats["images"] >= len(files)
    executions = aws["sfn"].list_executions(stateMachineArn=aws["state_machine"])["executions"]
    assert executions, "split starts the training state machine"


# ---------------------------------------------------------------- gate -> promote -> inference
@pytest.fixture(scope="module")
def trained(aws, tmp_path_factory):
    """Two training outputs as SageMaker leaves them: a model that passes the gate and one that does not."""
    from medimage.core.preprocess import PreprocessSpec

    model_dir = build_model_dir(tmp_path_factory.mktemp("model"), LABELS)
    meta = {
        "format_version": 1,
        "labels": LABELS,
        "preprocess": PreprocessSpec(image_size=64, channels=1).to_dict(),
        "model_file": "model.tflite",
        "int8_model_file": "model-int8.tflite",
        "preset": DATASET,
        "dataset": DATASET,
        "manifest_version": MANIFEST_VERSION,
        "trained_at": "2026-11-25T00:00:00+00:00",
        "training_seconds": 1.0,
        "parameters": {"note": "untrained sam local fixture"},
    }
    out = {}
    for name, acc in (("good", 0.95), ("weak", 0.3)):
        key = f"training/{DATASET}/sam-{name}/output/model.tar.gz"
        body = model_tarball(model_dir, meta, evaluation(LABELS, accuracy=acc, recall=acc))
        aws["s3"].put_object(Bucket=BUCKET, Key=key, Body=body)
        out[name] = {
            "TrainingJobName": f"sam-{name}",
            "TrainingJobStatus": "Completed",
            "ModelArtifacts": {"S3ModelArtifacts": f"s3://{BUCKET}/{key}"},
            "FinalMetricDataList": [],
        }
    return out


def execution_input() -> dict[str, Any]:
    return {
        "dataset": DATASET,
        "preset": DATASET,
        "manifest_version": MANIFEST_VERSION,
        "bucket": BUCKET,
        "manifest_prefix": f"manifests/{DATASET}/{MANIFEST_VERSION}/",
    }


def test_gate_passes_a_good_model_and_promote_publishes_it(sam, aws, trained):
    event = {**execution_input(), "training": trained["good"]}

    gate = sam.invoke("GateFunction", event)

    assert gate["passed"] is True, gate
    assert get_json(aws, gate["gate_key"])["passed"] is True

    promoted = sam.invoke("PromoteFunction", {**event, "gate": gate})

    assert promoted["promoted"] is True, promoted
    pointer = get_json(aws, f"models/{DATASET}/production.json")
    assert pointer["version"] == promoted["version"]
    aws["s3"].head_object(Bucket=BUCKET, Key=pointer["model_key"])


def test_gate_rejects_a_weak_model(sam, aws, trained):
    gate = sam.invoke("GateFunction", {**execution_input(), "training": trained["weak"]})

    assert gate["passed"] is False, gate
    assert gate["reasons"], "a rejection says why"


def inference_function(raw_template) -> str:
    images = [
        n
        for n, r in raw_template["Resources"].items()
        if r["Type"] == "AWS::Serverless::Function" and r["Properties"].get("PackageType") == "Image"
    ]
    if not images:
        pytest.skip("no image (inference) function in template.yaml yet")
    return images[0]


def find_label(value: Any) -> str | None:
    if isinstance(value, dict):
        if isinstance(value.get("label"), str):
            return value["label"]
        value = list(value.values())
    if isinstance(value, list):
        for v in value:
            if (found := find_label(v)) is not None:
                return found
    return None


def test_inference_labels_a_real_xray(sam, aws, raw_template, real_xray):
    function = inference_function(raw_template)
    assert aws["s3"].list_objects_v2(Bucket=BUCKET, Prefix=f"models/{DATASET}/production.json")["KeyCount"], (
        "the promote test publishes the model inference serves"
    )
    event = load_event("inference-api-predict-binary.json")
    event["body"], event["isBase64Encoded"] = base64.b64encode(real_xray).decode("ascii"), True

    response = sam.invoke(function, event)

    assert response["statusCode"] == 200, response
    body = json.loads(
        base64.b64decode(response["body"]) if response.get("isBase64Encoded") else response["body"]
    )
    assert find_label(body) in LABELS, body


# ---------------------------------------------------------------- what the built artifacts carry
def shipped_packages(names: list[str]) -> set[str]:
    return {name for name in names if name != "__pycache__"}


def test_built_layer_and_image_hold_only_their_runtime_sets(built_template):
    from cfnlint.decode import decode
    from samlocal import run

    from medimage.runtime_sets import RUNTIME_SETS

    layer = built_template.parent / "MedimageLayer" / "python" / "medimage"
    assert shipped_packages([p.name for p in layer.iterdir()]) == {*RUNTIME_SETS["layer"], "__init__.py"}

    built, matches = decode(str(built_template))
    assert not matches
    (image,) = [
        r["Properties"]["ImageUri"]
        for r in built["Resources"].values()
        if r["Type"] == "AWS::Serverless::Function" and r["Properties"].get("PackageType") == "Image"
    ]
    listing = run(
        ["docker", "run", "--rm", "--entrypoint", "/bin/sh", image, "-c", "ls /var/task/medimage"],
        timeout=120,
    )
    assert shipped_packages(listing.stdout.split()) == {*RUNTIME_SETS["image"], "__init__.py"}
