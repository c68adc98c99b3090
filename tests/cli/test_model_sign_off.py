"""`medimage model approve|reject` on moto: the answer carries who (sts:GetCallerIdentity), when, the note and
the scorecard's figures to the waiting task; nothing pending, a missing note and a stale token are refused
with their codes. The waiting task here is a one-state machine (the real workflow's sign-off:
tests/orchestration/test_sign_off_workflow.py)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from medimage.adapters.aws import reset_clients
from medimage.adapters.s3 import S3ObjectStore
from medimage.core.registry import ModelEntry, ProductionPointer, nominate
from medimage.core.sign_off import PendingSignOff, SignOffRecord, sign_off_key
from medimage.local.account import ACCOUNT, REGION
from medimage.ops.sign_off import SignOffProblem, answer_sign_off

from .conftest import BUCKET, ROLE

DS = "chestxray2017"
FUNCTION = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:PromoteFunction"
WAIT = {
    "StartAt": "AwaitSignOff",
    "States": {
        "AwaitSignOff": {
            "Type": "Task",
            "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
            "Parameters": {"FunctionName": FUNCTION, "Payload": {"task_token.$": "$$.Task.Token"}},
            "TimeoutSeconds": 60,
            "ResultPath": "$.approval",
            "Catch": [{"ErrorEquals": ["SignOffRejected"], "ResultPath": "$.rejection", "Next": "Rejected"}],
            "End": True,
        },
        "Rejected": {"Type": "Succeed"},
    },
}


def entry(version: str) -> ModelEntry:
    return ModelEntry(version, f"models/{DS}/{version}/model.tflite", "ab" * 32, "2026-12-01T00:00:00+00:00")


class Waiting:
    """A state machine whose one task waits for a token; ``start`` returns (execution, token)."""

    def __init__(self, sfn: Any, tokens: list[str]) -> None:
        self.sfn = sfn
        self.tokens = tokens
        self.arn = sfn.create_state_machine(name="wait", definition=json.dumps(WAIT), roleArn=ROLE)[
            "stateMachineArn"
        ]

    def start(self) -> tuple[str, str]:
        before = len(self.tokens)
        execution = self.sfn.start_execution(stateMachineArn=self.arn, name=uuid.uuid4().hex, input="{}")
        for _ in range(200):
            if len(self.tokens) > before:
                break
            time.sleep(0.05)
        return execution["executionArn"], self.tokens[-1]

    def output(self, execution: str) -> dict[str, Any]:
        for _ in range(200):
            described = self.sfn.describe_execution(executionArn=execution)
            if described["status"] != "RUNNING":
                return json.loads(described["output"])
            time.sleep(0.05)
        raise AssertionError("the execution kept waiting")


@pytest.fixture
def waiting() -> Iterator[Waiting]:
    from moto import mock_aws

    from medimage.local.environment import moto_config
    from medimage.local.moto_patches import local_training_workflow

    tokens: list[str] = []
    with mock_aws(config=moto_config()):
        reset_clients()
        boto3.client("s3", region_name=REGION).create_bucket(Bucket=BUCKET)
        with local_training_workflow({"PromoteFunction": lambda e: tokens.append(e["task_token"])}):
            yield Waiting(boto3.client("stepfunctions", region_name=REGION), tokens)
    reset_clients()


def put_pending(execution: str, token: str, stage: str) -> None:
    store = S3ObjectStore(BUCKET)
    if stage == "candidate":
        current = nominate(
            ProductionPointer(DS, (entry("v1"),)), entry("v2"), "v1", "2026-12-01T01:00:00+00:00"
        )
        store.put_json(f"models/{DS}/production.json", current.to_dict())
    pending = PendingSignOff(
        "v2",
        stage,
        entry("v2"),
        "v1",
        token,
        execution,
        "2026-12-07T00:00:00+00:00",
        "2026-12-10T00:00:00+00:00",
        {},
    )
    store.put_json(sign_off_key(DS), SignOffRecord(DS, pending).to_dict())


def test_reject_sends_who_when_the_note_and_the_scorecard_to_the_waiting_task(waiting, cli):
    execution, token = waiting.start()
    put_pending(execution, token, "candidate")
    run = cli("model", "reject", "--dataset", DS, "--bucket", BUCKET, "--note", "  misses viral cases ")
    assert run.code == 0, run.err
    assert "v2: rejected by arn:aws:" in run.out and "leaves production as it is" in run.out
    rejection = waiting.output(execution)["rejection"]
    assert rejection["Error"] == "SignOffRejected"
    answer = json.loads(rejection["Cause"])
    assert answer["outcome"] == "rejected" and answer["note"] == "misses viral cases"
    assert answer["by"] == boto3.client("sts", region_name=REGION).get_caller_identity()["Arn"]
    assert answer["scorecard"]["pairs"] == 0 and answer["scorecard"]["scorecard_key"].endswith(
        "v2/scorecard.json"
    )
    # The scorecard of that moment was written where the trial keeps it.
    assert S3ObjectStore(BUCKET).get_json(f"trials/{DS}/v2/scorecard.json")["pairs"] == 0


def test_approve_sends_the_decision_as_the_task_output(waiting, cli):
    execution, token = waiting.start()
    put_pending(execution, token, "pending")
    run = cli("model", "approve", "--dataset", DS, "--bucket", BUCKET, "--note", "read the gate", "--json")
    assert run.code == 0, run.err
    approval = waiting.output(execution)["approval"]
    assert approval == run.json()["decision"]
    assert approval["outcome"] == "approved" and approval["scorecard"] is None  # no trial, no scorecard


def test_an_answer_for_an_execution_that_ended_is_refused_as_stale(waiting, cli):
    execution, token = waiting.start()
    put_pending(execution, token, "pending")
    assert cli("model", "approve", "--dataset", DS, "--bucket", BUCKET, "--note", "yes").code == 0
    waiting.output(execution)
    run = cli("model", "reject", "--dataset", DS, "--bucket", BUCKET, "--note", "changed my mind")
    assert run.code == 2 and "has ended" in run.err and execution in run.err
    with pytest.raises(SignOffProblem) as caught:
        answer_sign_off(S3ObjectStore(BUCKET), waiting.sfn, boto3.client("sts"), DS, True, "again")
    assert caught.value.code == "sign_off_stale"


def test_nothing_pending_or_no_note_is_refused_before_anything_is_sent(waiting, cli):
    run = cli("model", "approve", "--dataset", DS, "--bucket", BUCKET, "--note", "fine")
    assert run.code == 2 and "no model of dataset chestxray2017 is waiting for a sign-off" in run.err
    with pytest.raises(SignOffProblem) as caught:
        answer_sign_off(S3ObjectStore(BUCKET), waiting.sfn, boto3.client("sts"), DS, True, "fine")
    assert caught.value.code == "no_sign_off_pending"
    execution, token = waiting.start()
    put_pending(execution, token, "pending")
    run = cli("model", "approve", "--dataset", DS, "--bucket", BUCKET)
    assert run.code == 2 and "--note" in run.err
    with pytest.raises(SignOffProblem) as caught:
        answer_sign_off(S3ObjectStore(BUCKET), waiting.sfn, boto3.client("sts"), DS, False, "   ")
    assert caught.value.code == "sign_off_note_required"
    assert waiting.sfn.describe_execution(executionArn=execution)["status"] == "RUNNING"  # nothing sent
    waiting.sfn.stop_execution(executionArn=execution)


def test_model_list_shows_the_pending_sign_off_without_its_token(waiting, cli):
    put_pending("arn:aws:states:us-east-1:123456789012:execution:training:run-9", "secret-token", "candidate")
    run = cli("model", "list", "--dataset", DS, "--bucket", BUCKET)
    assert run.code == 0 and "awaiting sign-off: v2 (candidate)" in run.out
    as_json = cli("model", "list", "--dataset", DS, "--bucket", BUCKET, "--json")
    assert as_json.json()["sign_off"]["pending"]["version"] == "v2"
    assert "secret-token" not in run.out + as_json.out
