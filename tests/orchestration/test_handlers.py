"""Gate and Promote handlers on the recorded task inputs (events/), the registry's conditional swap,
and the ASL/template wiring. No training here: the job output is a small hand-made model.tar.gz."""

from __future__ import annotations

import io
import json
import re
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from medimage.adapters.registry_store import RegistryConflict, S3RegistryStore
from medimage.core.registry import ModelEntry, promote
from medimage.local.account import REGION
from medimage.local.functions import LocalFunction
from medimage.training import METRIC_DEFINITIONS
from tests.conftest import EVENT_BUCKET, load_event

REPO = Path(__file__).resolve().parents[2]
LABELS = ["normal", "bacterial", "viral"]


def evaluation(accuracy: float, pneumonia_recall: float) -> dict[str, Any]:
    per_class = {
        label: {
            "precision": 0.9,
            "recall": pneumonia_recall if label != "normal" else 0.9,
            "f1": 0.9,
            "support": 10,
        }
        for label in LABELS
    }
    split = {
        "n": 30,
        "accuracy": accuracy,
        "per_class": per_class,
        "macro_auc": 0.95,
        "confusion_matrix": [[10, 0, 0], [0, 10, 0], [0, 0, 10]],
        "labels": LABELS,
    }
    return {"val": split, "test": split}


def model_tar(accuracy: float = 0.91, recall: float = 0.8) -> bytes:
    files = {
        "model.tflite": b"float model bytes",
        "model-int8.tflite": b"int8 model bytes",
        "labels.txt": "\n".join(LABELS).encode(),
        "evaluation.json": json.dumps(evaluation(accuracy, recall)).encode(),
        "model.json": json.dumps(
            {
                "format_version": 1,
                "labels": LABELS,
                "model_file": "model.tflite",
                "manifest_version": "20261125T190500Z-1a2b3c4d",
            }
        ).encode(),
    }
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def handler(name: str, **env: str) -> LocalFunction:
    return LocalFunction(
        name, REPO / "functions" / name, "app.lambda_handler", {"POWERTOOLS_SERVICE_NAME": name, **env}
    )


@pytest.fixture
def s3() -> Iterator[Any]:
    from moto import mock_aws

    from medimage.adapters.aws import reset_clients

    with mock_aws():
        reset_clients()
        client = boto3.client("s3", region_name=REGION)
        client.create_bucket(Bucket=EVENT_BUCKET)
        yield client
    reset_clients()


def put_job_output(s3: Any, event: dict[str, Any], data: bytes) -> None:
    key = event["training"]["ModelArtifacts"]["S3ModelArtifacts"].split(f"{EVENT_BUCKET}/", 1)[1]
    s3.put_object(Bucket=EVENT_BUCKET, Key=key, Body=data)


def read(s3: Any, key: str) -> Any:
    return json.loads(s3.get_object(Bucket=EVENT_BUCKET, Key=key)["Body"].read())


def test_gate_then_promote_on_the_recorded_task_inputs(s3):
    gate_event = load_event("gate-first-model.json")
    assert gate_event["training"]["FinalMetricDataList"] == []  # the gate must not depend on it
    put_job_output(s3, gate_event, model_tar())
    decision = handler("gate").invoke(gate_event)
    assert decision["passed"] is True and decision["champion_version"] is None
    assert read(s3, decision["gate_key"])["metrics"]["accuracy"] == 0.91

    result = handler("promote").invoke(load_event("promote-first-model.json"))
    pointer = read(s3, "models/chestxray2017/production.json")
    assert pointer["version"] == result["version"] == gate_event["training"]["TrainingJobName"]
    stored = s3.get_object(Bucket=EVENT_BUCKET, Key=pointer["model_key"])["Body"].read()
    assert stored == b"float model bytes"


def test_gate_rejects_on_the_recall_floor_and_promote_refuses_a_rejected_model(s3):
    gate_event = load_event("gate-first-model.json")
    put_job_output(s3, gate_event, model_tar(accuracy=0.95, recall=0.3))
    decision = handler("gate").invoke(gate_event)
    assert decision["passed"] is False
    assert any("recall of 'viral'" in r for r in decision["reasons"])
    with pytest.raises(Exception, match="does not record a passed gate"):
        handler("promote").invoke(load_event("promote-first-model.json"))
    listed = s3.list_objects_v2(Bucket=EVENT_BUCKET, Prefix="models/chestxray2017/production.json")
    assert listed["KeyCount"] == 0


def sign_off_topic() -> tuple[str, str]:
    """The sign-off topic with a raw-delivery queue to read what was published."""
    sns, sqs = boto3.client("sns", region_name=REGION), boto3.client("sqs", region_name=REGION)
    topic = sns.create_topic(Name="sign-off")["TopicArn"]
    queue = sqs.create_queue(QueueName="sign-off-inbox")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "true"})
    return topic, queue


def staged_for_sign_off(s3: Any, topic: str) -> tuple[LocalFunction, dict[str, Any], dict[str, Any]]:
    """A first model gated and staged for a sign-off: (the promote function, its task base, the stage)."""
    gate_event = load_event("gate-first-model.json")
    put_job_output(s3, gate_event, model_tar())
    handler("gate").invoke(gate_event)
    promote_fn = handler("promote", SIGN_OFF_TOPIC_ARN=topic)
    event = load_event("promote-first-model.json")
    staged = promote_fn.invoke({**event, "action": "stage_for_sign_off", "timeout_hours": "72"})
    base = {
        "dataset": event["dataset"],
        "bucket": event["bucket"],
        "version": staged["version"],
        "execution": "arn:aws:states:us-east-1:123456789012:execution:training:run-1",
    }
    request = {"action": "request_sign_off", "task_token": "token-1", "staged": staged, "timeout_seconds": 60}
    promote_fn.invoke({**base, **request})
    return promote_fn, base, staged


def test_the_promote_function_stages_a_model_for_sign_off_and_applies_the_approval(s3):
    topic, queue = sign_off_topic()
    promote_fn, base, staged = staged_for_sign_off(s3, topic)
    assert staged["stage"] == "pending" and staged["timeout_seconds"] == 72 * 3600
    listed = s3.list_objects_v2(Bucket=EVENT_BUCKET, Prefix="models/chestxray2017/production.json")
    assert listed["KeyCount"] == 0  # held for the sign-off
    assert read(s3, "models/chestxray2017/sign-off.json")["pending"]["task_token"] == "token-1"
    messages = boto3.client("sqs", region_name=REGION).receive_message(QueueUrl=queue)["Messages"]
    assert json.loads(messages[0]["Body"])["version"] == staged["version"]
    assert "token-1" not in messages[0]["Body"]
    approval = {"outcome": "approved", "by": "arn:aws:iam::123456789012:user/lead", "at": "t", "note": "ok"}
    result = promote_fn.invoke({**base, "action": "sign_off", "approval": approval})
    assert result["production_version"] == staged["version"]
    pointer = read(s3, "models/chestxray2017/production.json")
    assert pointer["history"][0]["sign_off"]["by"] == "arn:aws:iam::123456789012:user/lead"


def test_the_promote_function_closes_a_sign_off_that_timed_out_and_refuses_an_unknown_action(s3):
    topic, _ = sign_off_topic()
    promote_fn, base, _ = staged_for_sign_off(s3, topic)
    assert promote_fn.invoke({**base, "action": "close_sign_off", "outcome": "timed_out"})["by"] is None
    record = read(s3, "models/chestxray2017/sign-off.json")
    assert record["pending"] is None and record["decided"][0]["outcome"] == "timed_out"
    with pytest.raises(Exception, match="unknown promote action"):
        promote_fn.invoke({**base, "action": "promote-everything"})


def test_the_min_accuracy_override_of_the_template_reaches_the_gate(s3):
    gate_event = load_event("gate-first-model.json")
    put_job_output(s3, gate_event, model_tar(accuracy=0.91))
    assert handler("gate", MIN_ACCURACY_OVERRIDE="0.95").invoke(gate_event)["passed"] is False


def test_a_concurrent_swap_is_detected_by_the_conditional_write_and_both_promotions_survive(s3):
    store = S3RegistryStore(EVENT_BUCKET, s3=s3, sleep=lambda _: None)
    first = ModelEntry("v1", "models/ds/v1/model.tflite", "a" * 64, "t1")
    store.update("ds", lambda current: promote(current, "ds", first, None))
    rival = ModelEntry("v2", "models/ds/v2/model.tflite", "b" * 64, "t2")
    ours = ModelEntry("v3", "models/ds/v3/model.tflite", "c" * 64, "t3")
    attempts = []

    def change(current):
        attempts.append(current.version)
        if len(attempts) == 1:  # another promotion lands between our read and our write
            S3RegistryStore(EVENT_BUCKET, s3=s3).update("ds", lambda c: promote(c, "ds", rival, "v1"))
        return promote(current, "ds", ours, current.version)

    pointer = store.update("ds", change)
    assert attempts == ["v1", "v2"]
    assert [e.version for e in pointer.history] == ["v3", "v2", "v1"]
    assert store.pointer("ds") == pointer


def test_a_registry_that_keeps_changing_gives_up_with_a_retryable_error(s3):
    store = S3RegistryStore(EVENT_BUCKET, s3=s3, attempts=2, sleep=lambda _: None)
    counter = iter(range(100))

    def change(current):
        n = next(counter)
        S3RegistryStore(EVENT_BUCKET, s3=s3).update(
            "ds", lambda c: promote(c, "ds", ModelEntry(f"r{n}", "k", "0" * 64, "t"), c and c.version)
        )
        return promote(
            store.pointer("ds"), "ds", ModelEntry(f"mine{n}", "k", "1" * 64, "t"), store.pointer("ds").version
        )

    with pytest.raises(RegistryConflict):
        store.update("ds", change)


def test_the_definition_substitutes_every_arn_name_and_image_and_hard_codes_no_account():
    text = (REPO / "statemachine" / "training.asl.json").read_text()
    definition = json.loads(text)
    assert not re.search(r"\d{12}", text) and REGION not in text
    assert set(re.findall(r"\$\{(\w+)\}", text)) == {
        "TrainingSourceUri",
        "Region",
        "TrainingEpochs",
        "SageMakerRoleArn",
        "TrainingImage",
        "TrainingInstanceType",
        "GateFunctionArn",
        "PromoteFunctionArn",
        "PackFunctionArn",
        "FailureTopicArn",
        "ApprovalRequired",
        "ApprovalTimeoutHours",
    }
    states = definition["States"]
    train = states["Train"]["Parameters"]
    assert train["AlgorithmSpecification"]["MetricDefinitions"] == METRIC_DEFINITIONS
    assert train["InputDataConfig.$"] == "$.channels.config"
    for channels in ("FileChannels", "ShardChannels"):
        assert [c["ChannelName"] for c in states[channels]["Parameters"]["config"]] == [
            "train",
            "validation",
            "test",
            "pretrained",
        ], channels
    for name, state in states.items():
        if state["Type"] in ("Task", "Map"):
            assert state.get("Catch"), name
        if state["Type"] == "Task":
            assert state.get("Retry"), name
    for name, state in states["PackShards"]["ItemProcessor"]["States"].items():
        assert state["Type"] != "Task" or state.get("Retry"), name
