"""`medimage pipeline`: start builds the contract's execution input; status and list read executions."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from medimage.core import layout
from medimage.local.account import REGION
from medimage.ops import executions as pipeline
from medimage.ops.manifests import MANIFEST_FILES

from .conftest import BUCKET, trivial_state_machine

VERSION = "20261125T190500Z-1a2b3c4d"
JOB = f"{VERSION}-9f8e7d6c"


def put_json(s3: Any, key: str, value: Any) -> None:
    s3.put_object(Bucket=BUCKET, Key=key, Body=json.dumps(value).encode())


def write_manifest(s3: Any, version: str = VERSION, preset: str = "chestxray2017") -> None:
    """What the split Lambda leaves for dataset "ds": the channel manifests, stats.json naming the
    preset, then latest.json."""
    prefix = layout.manifest_prefix("ds", version)
    for name in MANIFEST_FILES:
        put_json(s3, prefix + name, [{"prefix": f"s3://{BUCKET}/"}])
    put_json(s3, f"{prefix}stats.json", {"dataset": "ds", "preset": preset})
    put_json(s3, layout.latest_manifest_key("ds"), {"version": version, "created_at": "2026-11-25T19:05:00Z"})


@pytest.fixture
def sfn(aws: None) -> Any:
    return boto3.client("stepfunctions", region_name=REGION)


def test_start_uses_the_latest_manifest(s3: Any, sfn: Any, cli: Any) -> None:
    write_manifest(s3, version="20260101T000000Z-00000000")
    write_manifest(s3)  # the newer latest.json wins
    arn = trivial_state_machine(sfn)
    run = cli("pipeline", "start", "--dataset", "ds", "--bucket", BUCKET, "--state-machine", arn, "--json")
    assert run.code == 0, run.err
    expected = {
        "dataset": "ds",
        "preset": "chestxray2017",
        "manifest_version": VERSION,
        "bucket": BUCKET,
        "manifest_prefix": f"manifests/ds/{VERSION}/",
    }
    assert run.json()["input"] == expected
    (execution,) = sfn.list_executions(stateMachineArn=arn)["executions"]
    assert execution["executionArn"] == run.json()["execution_arn"]
    assert execution["name"].startswith(f"ds-{VERSION}-r") and len(execution["name"]) <= 80
    assert json.loads(sfn.describe_execution(executionArn=execution["executionArn"])["input"]) == expected


def test_start_with_hyperparameters_and_preset(s3: Any, sfn: Any, cli: Any) -> None:
    write_manifest(s3)
    arn = trivial_state_machine(sfn)
    run = cli(
        "pipeline",
        "start",
        "--dataset",
        "ds",
        "--bucket",
        BUCKET,
        "--state-machine",
        arn,
        "--json",
        "--preset",
        "chestxray2017-binary",
        "-H",
        "epochs=3",
        "-H",
        "batch-size=16",
    )
    payload = run.json()["input"]
    assert payload["preset"] == "chestxray2017-binary"
    assert payload["hyperparameters"] == {"epochs": "3", "batch-size": "16"}


def test_start_refuses_script_settings(s3: Any, sfn: Any, cli: Any) -> None:
    write_manifest(s3)
    arn = trivial_state_machine(sfn)
    run = cli(
        "pipeline",
        "start",
        "--dataset",
        "ds",
        "--bucket",
        BUCKET,
        "--state-machine",
        arn,
        "-H",
        "sagemaker_program=evil.py",
    )
    assert run.code == 2 and "not overridable" in run.err
    assert sfn.list_executions(stateMachineArn=arn)["executions"] == []


def test_start_without_a_manifest_says_what_to_do(s3: Any, sfn: Any, cli: Any) -> None:
    arn = trivial_state_machine(sfn)
    run = cli("pipeline", "start", "--dataset", "ds", "--bucket", BUCKET, "--state-machine", arn)
    assert run.code == 2
    assert run.err.count("\n") == 1
    assert "no manifest for dataset 'ds'" in run.err and "medimage ingest" in run.err


def test_start_on_a_version_without_its_channel_manifests_starts_nothing(s3: Any, sfn: Any, cli: Any) -> None:
    write_manifest(s3)
    s3.delete_object(Bucket=BUCKET, Key=f"{layout.manifest_prefix('ds', VERSION)}val.manifest")
    arn = trivial_state_machine(sfn)
    run = cli("pipeline", "start", "--dataset", "ds", "--bucket", BUCKET, "--state-machine", arn)
    assert run.code == 2
    assert "lacks val.manifest" in run.err
    assert sfn.list_executions(stateMachineArn=arn)["executions"] == []


def test_list_shows_only_the_dataset_newest_first(s3: Any, sfn: Any, cli: Any) -> None:
    arn = trivial_state_machine(sfn)
    runs = [("ds-v1", "ds"), ("ds-extra-v1", "ds-extra"), ("other-v1", "other"), ("ds-v2", "ds")]
    for name, dataset in runs:
        sfn.start_execution(
            stateMachineArn=arn,
            name=name,
            input=json.dumps({"dataset": dataset, "manifest_version": name[-2:]}),
        )
        time.sleep(0.01)
    run = cli("pipeline", "list", "--dataset", "ds", "--state-machine", arn, "--json")
    assert run.code == 0, run.err
    # "ds-extra-v1" shares the name prefix but not the dataset.
    assert [e["name"] for e in run.json()] == ["ds-v2", "ds-v1"]
    text = cli("pipeline", "list", "--dataset", "ds", "--state-machine", arn)
    assert "RUNNING" in text.out and "ds-v2" in text.out.splitlines()[0]
    assert "no executions" in cli("pipeline", "list", "--dataset", "nope", "--state-machine", arn).out


@pytest.fixture
def executing() -> Iterator[None]:
    """moto running the ASL interpreter, for an execution with a real history and output."""
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        yield


def finished_execution(sfn: Any, definition: dict[str, Any], payload: dict[str, Any]) -> str:
    arn = trivial_state_machine(sfn, definition=definition)
    execution = sfn.start_execution(stateMachineArn=arn, name="ds-" + VERSION, input=json.dumps(payload))
    for _ in range(200):
        if sfn.describe_execution(executionArn=execution["executionArn"])["status"] != "RUNNING":
            break
        time.sleep(0.02)
    return execution["executionArn"]


def test_status_reports_the_gate_decision_from_gate_json(executing: None, cli: Any) -> None:
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=BUCKET)
    sfn = boto3.client("stepfunctions", region_name=REGION)
    gate_key = layout.model_prefix("ds", JOB) + "gate.json"
    put_json(
        s3,
        gate_key,
        {
            "passed": False,
            "reasons": ["accuracy 0.71 < 0.85"],
            "metrics": {"accuracy": 0.71, "recall": {}},
            "thresholds": {"min_accuracy": 0.85, "min_recall": 0.5},
            "champion": None,
        },
    )
    # The real state names, each Pass standing in for its task.
    definition = {
        "StartAt": "ResolveJob",
        "States": {
            "ResolveJob": {
                "Type": "Pass",
                "Result": {"job_name": JOB},
                "ResultPath": "$.job",
                "Next": "Gate",
            },
            "Gate": {
                "Type": "Pass",
                "ResultPath": "$.gate",
                "Next": "Rejected",
                "Result": {"decision": {"passed": False, "version": JOB, "gate_key": gate_key}},
            },
            "Rejected": {"Type": "Succeed"},
        },
    }
    payload = {
        "dataset": "ds",
        "preset": "chestxray2017",
        "manifest_version": VERSION,
        "bucket": BUCKET,
        "manifest_prefix": f"manifests/ds/{VERSION}/",
    }
    arn = finished_execution(sfn, definition, payload)
    sm_arn = arn.replace(":execution:", ":stateMachine:").rsplit(":", 1)[0]

    run = cli("pipeline", "status", "--dataset", "ds", "--state-machine", sm_arn, "--json")
    assert run.code == 0, run.err
    status = run.json()
    assert status["execution_arn"] == arn and status["status"] == "SUCCEEDED"
    assert status["manifest_version"] == VERSION and status["model_version"] == JOB
    assert status["current_step"] == "Rejected"
    assert status["gate"]["passed"] is False
    assert status["gate"]["accuracy"] == 0.71
    assert status["gate"]["reasons"] == ["accuracy 0.71 < 0.85"]

    text = cli("pipeline", "status", "--execution", arn)
    assert "SUCCEEDED" in text.out and "gate: rejected, accuracy 0.7100" in text.out
    assert "last step: Rejected" in text.out


def test_status_says_when_the_test_split_could_not_tell_and_how_many_images_would(
    executing: None, cli: Any
) -> None:
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=BUCKET)
    sfn = boto3.client("stepfunctions", region_name=REGION)
    gate_key = layout.model_prefix("ds", JOB) + "gate.json"
    reason = "recall of 'pneumonia' 0.8750 < floor 0.9000, but its 95% interval 0.7389-0.9454 on 40 images"
    put_json(
        s3,
        gate_key,
        {
            "passed": False,
            "outcome": "insufficient_evidence",
            "images_needed": 1662,
            "class_images_needed": {"pneumonia": 554},
            "reasons": [reason],
            "metrics": {"accuracy": 0.93, "recall": {"pneumonia": 0.875}},
            "champion": None,
        },
    )
    definition = {
        "StartAt": "ResolveJob",
        "States": {
            "ResolveJob": {
                "Type": "Pass",
                "Result": {"job_name": JOB},
                "ResultPath": "$.job",
                "Next": "Gate",
            },
            "Gate": {
                "Type": "Pass",
                "ResultPath": "$.gate",
                "Next": "InsufficientEvidence",
                "Result": {"decision": {"passed": False, "version": JOB, "gate_key": gate_key}},
            },
            "InsufficientEvidence": {"Type": "Succeed"},
        },
    }
    arn = finished_execution(sfn, definition, {"dataset": "ds", "bucket": BUCKET})

    status = cli("pipeline", "status", "--execution", arn, "--json").json()
    assert status["gate"]["outcome"] == "insufficient_evidence" and status["gate"]["images_needed"] == 1662
    text = cli("pipeline", "status", "--execution", arn).out
    assert "gate: insufficient evidence (not promoted), accuracy 0.9300" in text
    assert reason in text and "last step: InsufficientEvidence" in text
    assert "a test split of about 1662 images (with 554 'pneumonia' images) would decide" in text


def test_status_of_a_failed_execution_shows_the_error(executing: None) -> None:
    sfn = boto3.client("stepfunctions", region_name=REGION)
    definition = {
        "StartAt": "Train",
        "States": {
            "Train": {"Type": "Fail", "Error": "TrainFailed", "Cause": "AlgorithmError: out of memory"}
        },
    }
    arn = finished_execution(sfn, definition, {"dataset": "ds"})
    view = pipeline.status(sfn, None, arn)
    assert view.status == "FAILED"
    assert view.error == "TrainFailed: AlgorithmError: out of memory"
    assert view.gate is None


def test_status_without_executions_is_one_line(sfn: Any, cli: Any) -> None:
    arn = trivial_state_machine(sfn)
    run = cli("pipeline", "status", "--dataset", "ds", "--state-machine", arn)
    assert run.code == 2 and run.err.count("\n") == 1
    assert "no executions for dataset 'ds'" in run.err


def test_state_machine_from_the_stack_output(s3: Any, sfn: Any, cli: Any) -> None:
    arn = trivial_state_machine(sfn)
    cfn = boto3.client("cloudformation", region_name=REGION)
    template = {
        "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {"TrainingStateMachineArn": {"Value": arn}, "DataBucketName": {"Value": BUCKET}},
    }
    cfn.create_stack(StackName="medimage", TemplateBody=json.dumps(template))
    write_manifest(s3)
    assert cli("pipeline", "start", "--dataset", "ds").code == 0  # samconfig.toml's default stack
    assert len(sfn.list_executions(stateMachineArn=arn)["executions"]) == 1


def test_execution_names_are_unique_and_bounded() -> None:
    from datetime import UTC, datetime

    long_dataset = "d" * 63
    name = pipeline.manual_execution_name(long_dataset, VERSION, datetime(2026, 11, 25, tzinfo=UTC))
    assert len(name) == 80 and name.startswith(long_dataset + "-") and name.endswith("-r20261125000000")
    short = pipeline.manual_execution_name("a.b", "v1", datetime(2026, 1, 1, tzinfo=UTC))
    assert short == "a-b-v1-r20260101000000"
