"""The state machine's Train state sends the CreateTrainingJob request of medimage.core.training_job, and
every request the workflow makes (SageMaker, Lambda, S3, SNS) is one that botocore's service model accepts.

The ASL file runs on moto's interpreter with the template's substitutions; the SageMaker step records
what it is sent, the Gate and Promote functions answer canned decisions (their logic is tested in
tests/orchestration)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import botocore.session
import pytest
from botocore.validate import ParamValidator

from medimage.core import training_job as job
from medimage.core.sign_off import timeout_seconds
from medimage.local.account import ACCOUNT
from medimage.local.environment import moto_config
from medimage.local.sagemaker import LocalSageMaker
from medimage.local.template import Resolver, definition_from_template
from tests.ops.ops_helpers import DATASET, PRESET, REGION, REPO, VERSION, put_manifest_version
from tests.orchestration.workflow_helpers import (
    ExecutionResult,
    create_state_machine,
    execution_result,
    run_execution,
)

BUCKET = "medimage-requests-test"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/medimage-sagemaker"
GATE = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:GateFunction"
PROMOTE = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:PromoteFunction"
SOURCE_URI = f"s3://{BUCKET}/code/training/sourcedir.tar.gz"


@dataclass
class RecordingSageMaker(LocalSageMaker):
    """Keeps each CreateTrainingJob request; the job ends at once, Completed or (``fail``) Failed."""

    fail: bool = False
    requests: list[dict[str, Any]] = field(default_factory=list)

    def _run(self, name: str, request: dict[str, Any], hyperparameters: dict[str, str]) -> dict[str, Any]:
        self.requests.append(json.loads(json.dumps(request)))
        output = str(request["OutputDataConfig"]["S3OutputPath"])
        description = {
            "TrainingJobName": name,
            "TrainingJobArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:training-job/{name.lower()}",
            "HyperParameters": hyperparameters,
            "ModelArtifacts": {"S3ModelArtifacts": f"{output}{name}/output/model.tar.gz"},
        }
        if self.fail:
            return self._finish(description, "Failed", "AlgorithmError: the test said so")
        return self._finish(description, "Completed", None)


# A stack deployed with TrainingEpochs set (the template's default is empty: the preset's epochs).
STACK_EPOCHS = "7"


@dataclass
class Workflow:
    sfn: Any
    arn: str
    sagemaker: RecordingSageMaker
    invocations: list[dict[str, Any]]
    template: dict[str, Any]
    arn_with_epochs: str  # the same definition with TrainingEpochs=STACK_EPOCHS
    arn_signed: str  # ApprovalRequired=true
    arn_hurried: str  # ApprovalRequired=true with a wait of 2 s
    tokens: list[str] = field(default_factory=list)

    def run(self, arn: str | None = None, **extra: Any) -> ExecutionResult:
        payload = {
            "dataset": DATASET,
            "preset": PRESET,
            "manifest_version": VERSION,
            "bucket": BUCKET,
            "manifest_prefix": f"manifests/{DATASET}/{VERSION}/",
            **extra,
        }
        return run_execution(self.sfn, arn or self.arn, payload, timeout_s=120)

    def run_signed(self, answer: str) -> ExecutionResult:
        """An execution that waits for a sign-off, answered ``approve``, ``reject`` or not at all."""
        before = len(self.tokens)
        arn = self.sfn.start_execution(
            stateMachineArn=self.arn_hurried if answer == "none" else self.arn_signed,
            name=f"signed-{answer}-{len(self.tokens)}",
            input=json.dumps(
                {
                    "dataset": DATASET,
                    "preset": PRESET,
                    "manifest_version": VERSION,
                    "bucket": BUCKET,
                    "manifest_prefix": f"manifests/{DATASET}/{VERSION}/",
                }
            ),
        )["executionArn"]
        deadline = time.monotonic() + 60
        while len(self.tokens) == before and time.monotonic() < deadline:
            time.sleep(0.05)
        answer_json = json.dumps({"outcome": answer, "by": ROLE, "at": "t", "note": "n"})
        if answer == "approve":
            self.sfn.send_task_success(taskToken=self.tokens[-1], output=answer_json)
        elif answer == "reject":
            self.sfn.send_task_failure(taskToken=self.tokens[-1], error="SignOffRejected", cause=answer_json)
        return execution_result(self.sfn, arn, timeout_s=120)

    def request_of(self, arn: str | None = None, **extra: Any) -> dict[str, Any]:
        """The one CreateTrainingJob request of a successful execution."""
        before = len(self.sagemaker.requests)
        result = self.run(arn, **extra)
        assert result.status == "SUCCEEDED", (result.error, result.cause)
        (sent,) = self.sagemaker.requests[before:]
        return sent


@pytest.fixture(scope="module")
def workflow(template: dict[str, Any]) -> Iterator[Workflow]:
    from moto import mock_aws

    from medimage.local.moto_patches import local_training_workflow

    with mock_aws(config=moto_config()):
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET)
        put_manifest_version(s3, BUCKET)
        topic = boto3.client("sns", region_name=REGION).create_topic(Name="training-failures")["TopicArn"]
        refs = {"DataBucket": BUCKET, "TrainingFailureTopic": topic}
        attrs = {
            ("SageMakerTrainingRole", "Arn"): ROLE,
            ("GateFunction", "Arn"): GATE,
            ("PromoteFunction", "Arn"): PROMOTE,
        }
        resolver = Resolver(template, refs, attrs, {}, REGION, ACCOUNT)
        with_epochs = Resolver(template, refs, attrs, {"TrainingEpochs": STACK_EPOCHS}, REGION, ACCOUNT)
        signed = Resolver(template, refs, attrs, {"ApprovalRequired": "true"}, REGION, ACCOUNT)
        hurried = Resolver(
            template,
            refs,
            attrs,
            {"ApprovalRequired": "true", "ApprovalTimeoutHours": "0.0005"},
            REGION,
            ACCOUNT,
        )
        invocations: list[dict[str, Any]] = []
        tokens: list[str] = []

        def gate(event: dict[str, Any]) -> dict[str, Any]:
            invocations.append({"function": "gate", "event": event})
            return {"passed": True, "version": event["training"]["TrainingJobName"]}

        def promote(event: dict[str, Any]) -> dict[str, Any]:
            invocations.append({"function": "promote", "event": event})
            if event.get("action") == "stage_for_sign_off":
                seconds = timeout_seconds(event["timeout_hours"])
                version = event["training"]["TrainingJobName"]
                return {"stage": "pending", "version": version, "timeout_seconds": seconds}
            if event.get("action") == "request_sign_off":
                tokens.append(event["task_token"])
            return {"promoted": True}

        sagemaker = RecordingSageMaker()
        sfn = boto3.client("stepfunctions", region_name=REGION)
        with local_training_workflow(
            {"GateFunction": gate, "PromoteFunction": promote}, sagemaker, retry_delay_scale=0.01
        ):
            arn = create_state_machine(sfn, definition_from_template(REPO, template, resolver), "training")
            arn_with_epochs = create_state_machine(
                sfn, definition_from_template(REPO, template, with_epochs), "training-with-epochs"
            )
            arn_signed = create_state_machine(
                sfn, definition_from_template(REPO, template, signed), "training-signed"
            )
            arn_hurried = create_state_machine(
                sfn, definition_from_template(REPO, template, hurried), "training-hurried"
            )
            yield Workflow(
                sfn, arn, sagemaker, invocations, template, arn_with_epochs, arn_signed, arn_hurried, tokens
            )


def expected_request(
    template: dict[str, Any], job_name: str, overrides: dict[str, str], epochs: str | None = None
) -> dict[str, Any]:
    """What ``medimage.core.training_job`` says this execution's job is, with the template's defaults
    (``epochs``: the stack's TrainingEpochs where it sets one)."""
    parameters = template["Parameters"]
    image = template["Mappings"]["TrainingImages"][REGION]["Cpu"]
    return job.create_training_job_request(
        job_name=job_name,
        role_arn=ROLE,
        image_uri=image,
        instance_type=parameters["TrainingInstanceType"]["Default"],
        bucket=BUCKET,
        dataset=DATASET,
        manifest_prefix=f"manifests/{DATASET}/{VERSION}/",
        hyperparameters=job.hyperparameters(
            DATASET,
            PRESET,
            VERSION,
            SOURCE_URI,
            REGION,
            epochs=epochs if epochs is not None else parameters["TrainingEpochs"]["Default"],
            overrides=overrides,
        ),
    )


def test_the_template_defaults_are_the_cores(template):
    parameters = template["Parameters"]
    assert parameters["TrainingInstanceType"]["Default"] == job.DEFAULT_INSTANCE_TYPE
    assert parameters["TrainingEpochs"]["Default"] == ""  # the preset's epochs, as the core leaves them
    assert parameters["TrainingSourceKey"]["Default"] == "code/training/sourcedir.tar.gz"


def test_by_default_the_preset_chooses_epochs_and_weights_and_the_job_gets_the_pretrained_channel(workflow):
    sent = workflow.request_of()
    assert "epochs" not in sent["HyperParameters"] and "weights" not in sent["HyperParameters"]
    channel = sent["InputDataConfig"][-1]
    assert channel == {
        "ChannelName": "pretrained",
        "DataSource": {
            "S3DataSource": {
                "S3DataType": "S3Prefix",
                "S3Uri": f"s3://{BUCKET}/pretrained/mobilenet_v2/",
                "S3DataDistributionType": "FullyReplicated",
            }
        },
        "InputMode": "File",
    }
    assert [c["ChannelName"] for c in sent["InputDataConfig"]] == [
        "train",
        "validation",
        "test",
        "pretrained",
    ]


def test_a_stack_that_sets_training_epochs_trains_that_long_unless_the_execution_overrides(workflow):
    sent = workflow.request_of(workflow.arn_with_epochs)
    assert sent["HyperParameters"]["epochs"] == STACK_EPOCHS
    assert sent == expected_request(workflow.template, sent["TrainingJobName"], {}, epochs=STACK_EPOCHS)
    overridden = workflow.request_of(workflow.arn_with_epochs, hyperparameters={"epochs": "3"})
    assert overridden["HyperParameters"]["epochs"] == "3"
    assert overridden["HyperParameters"]["sagemaker_program"] == job.ENTRY_POINT


def test_train_state_sends_the_cores_request(workflow):
    before = len(workflow.sagemaker.requests)
    result = workflow.run()
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    assert result.states_entered()[-1] == "Promoted"
    (sent,) = workflow.sagemaker.requests[before:]
    name = sent["TrainingJobName"]
    assert re.fullmatch(rf"{VERSION}-[0-9a-f]{{8}}", name)
    assert sent == expected_request(workflow.template, name, {})


def test_train_state_applies_overrides_as_the_core_does(workflow):
    before = len(workflow.sagemaker.requests)
    overrides = {"epochs": "3", "batch-size": "64", "weights": "imagenet"}
    result = workflow.run(hyperparameters=overrides)
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    (sent,) = workflow.sagemaker.requests[before:]
    assert sent == expected_request(workflow.template, sent["TrainingJobName"], overrides)
    assert sent["HyperParameters"]["epochs"] == "3"


def test_an_override_of_a_script_setting_is_ignored_by_the_asl_and_refused_by_the_core(workflow):
    before = len(workflow.sagemaker.requests)
    result = workflow.run(hyperparameters={"sagemaker_program": "evil.py"})
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    (sent,) = workflow.sagemaker.requests[before:]
    assert sent["HyperParameters"]["sagemaker_program"] == job.ENTRY_POINT
    assert sent == expected_request(workflow.template, sent["TrainingJobName"], {})
    from medimage.core.errors import BadExecutionInput

    with pytest.raises(BadExecutionInput):
        job.hyperparameters(
            DATASET, PRESET, VERSION, SOURCE_URI, REGION, overrides={"sagemaker_program": "x"}
        )


# ------------------------------------------------------------------------------- botocore's service models
# Task resource -> (botocore service, operation). The optimized integrations' names are Step Functions'
# own; aws-sdk integrations name the service and the action (camelCase) themselves.
OPTIMIZED = {
    "arn:aws:states:::sagemaker:createTrainingJob.sync": ("sagemaker", "CreateTrainingJob"),
    "arn:aws:states:::lambda:invoke": ("lambda", "Invoke"),
    "arn:aws:states:::lambda:invoke.waitForTaskToken": ("lambda", "Invoke"),
    "arn:aws:states:::sns:publish": ("sns", "Publish"),
}


def operation_of(resource: str) -> tuple[str, str]:
    if resource in OPTIMIZED:
        return OPTIMIZED[resource]
    found = re.fullmatch(r"arn:aws:states:::aws-sdk:([a-z0-9]+):([a-zA-Z0-9]+)", resource)
    assert found, f"no service model known for Task resource {resource}: add it to OPTIMIZED"
    return found.group(1), found.group(2)[0].upper() + found.group(2)[1:]


def as_api_params(service: str, operation: str, params: dict[str, Any]) -> dict[str, Any]:
    """What Step Functions sends for these parameters: an optimized integration serialises a JSON
    Lambda Payload and a JSON SNS Message to a string; everything else goes as it is."""
    params = dict(params)
    if (service, operation) == ("lambda", "Invoke") and not isinstance(params.get("Payload"), str):
        params["Payload"] = json.dumps(params["Payload"])
    if (service, operation) == ("sns", "Publish") and not isinstance(params.get("Message"), str):
        params["Message"] = json.dumps(params["Message"])
    return params


def validation_errors(service: str, operation: str, params: dict[str, Any]) -> str:
    model = botocore.session.get_session().get_service_model(service).operation_model(operation)
    report = ParamValidator().validate(params, model.input_shape)
    return report.generate_report() if report.has_errors() else ""


def scheduled_tasks(result: ExecutionResult) -> list[tuple[str, str, dict[str, Any]]]:
    """(state, resource, parameters) of every task the execution scheduled, from its history."""
    names = {e["id"]: e["stateEnteredEventDetails"]["name"] for e in result.events("TaskStateEntered")}
    tasks = []
    for event in result.events("TaskScheduled"):
        details = event["taskScheduledEventDetails"]
        state = names.get(event["previousEventId"], "?")
        resource = f"arn:aws:states:::{details['resourceType']}:{details['resource']}"
        tasks.append((state, resource, json.loads(details["parameters"])))
    return tasks


def test_every_request_of_the_workflow_validates_against_botocores_models(workflow):
    workflow.sagemaker.fail = False
    promoted = workflow.run()
    workflow.sagemaker.fail = True
    try:
        failed = workflow.run()
    finally:
        workflow.sagemaker.fail = False
    assert promoted.status == "SUCCEEDED" and failed.status == "FAILED"
    assert "NotifyFailure" in failed.states_entered()
    signed = [workflow.run_signed(answer) for answer in ("approve", "reject", "none")]
    assert [r.states_entered()[-1] for r in signed] == ["SignedOff", "SignOffRejected", "SignOffTimedOut"]
    seen: set[str] = set()
    problems = []
    runs = [promoted, failed, *signed]
    for state, resource, params in [task for run in runs for task in scheduled_tasks(run)]:
        service, operation = operation_of(resource)
        errors = validation_errors(service, operation, as_api_params(service, operation, params))
        if errors:
            problems.append(f"{state} ({service}.{operation}): {errors}")
        seen.add(state)
    assert not problems, "\n".join(problems)
    definition = json.loads((REPO / "statemachine" / "training.asl.json").read_text())
    tasks = {name for name, state in definition["States"].items() if state["Type"] == "Task"}
    assert seen == tasks, f"task states not exercised: {sorted(tasks - seen)}"


def test_the_validator_refuses_a_request_the_api_would_refuse():
    """The check above can fail: a request as moto would take it, but SageMaker would not."""
    bad = expected_request(
        {
            "Parameters": {
                "TrainingInstanceType": {"Default": "ml.m5.xlarge"},
                "TrainingEpochs": {"Default": ""},
            },
            "Mappings": {"TrainingImages": {REGION: {"Cpu": "image"}}},
        },
        "job-1",
        {},
    )
    bad["ResourceConfig"]["InstanceCount"] = "1"
    del bad["RoleArn"]
    errors = validation_errors("sagemaker", "CreateTrainingJob", bad)
    assert "RoleArn" in errors and "InstanceCount" in errors
    assert validation_errors("sns", "Publish", {"TopicArn": "t", "Message": {"a": 1}})
