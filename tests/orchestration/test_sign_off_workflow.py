"""A person's sign-off (ApprovalRequired) in the real statemachine/training.asl.json on moto's interpreter:
the workflow waits, `medimage model approve|reject` answers it, a short ApprovalTimeoutHours times it out.

One module-scoped sequence of executions on one dataset (one real training; identical jobs reuse the
trained model, see MemoTrainer), then each test checks one scenario's outcome.
"""

from __future__ import annotations

import contextlib
import io
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

import pytest

from medimage.cli.main import main
from medimage.core import layout
from medimage.core.sign_off import sign_off_key
from tests.orchestration.conftest import GOOD, Orchestration, write_dataset
from tests.orchestration.workflow_helpers import ExecutionResult, execution_result

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("workflow")]

DATASET = "signed"
VERSION = "20261206T100000Z-5e6f7a8b"
POINTER = layout.production_pointer_key(DATASET)
# 0.0005 h = 1.8 s: the wait's TimeoutSeconds is 2.
SHORT_HOURS = "0.0005"


@dataclass
class Run:
    result: ExecutionResult
    pointer_while_waiting: dict[str, Any] | None
    pending: dict[str, Any] | None
    pointer_after: dict[str, Any] | None
    cli: tuple[int, str]
    sign_off_messages: list[dict[str, Any]]


def wait_for_pending(o: Orchestration, execution_arn: str, timeout_s: float = 300) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        record = o.get_json(sign_off_key(DATASET)) or {}
        pending = record.get("pending") or {}
        if pending.get("execution") == execution_arn:
            return pending
        status = o.sfn.describe_execution(executionArn=execution_arn)["status"]
        assert status == "RUNNING", f"the execution ended ({status}) without asking for a sign-off"
        time.sleep(0.2)
    raise AssertionError("no sign-off request appeared")


@pytest.fixture(scope="module")
def runs(orchestration: Orchestration) -> dict[str, Run]:
    o = orchestration
    payload = {**write_dataset(o.s3, o.bucket, DATASET, VERSION), "hyperparameters": GOOD}
    signed = o.state_machine("training-signed", {"ApprovalRequired": "true"})
    hurried = o.state_machine(
        "training-hurried", {"ApprovalRequired": "true", "ApprovalTimeoutHours": SHORT_HOURS}
    )
    promote_env = o.functions["PromoteFunction"].environment
    done: dict[str, Run] = {}

    def run(name: str, machine: str, answer: list[str] | None) -> None:
        arn = o.sfn.start_execution(
            stateMachineArn=machine, name=f"{name}-{uuid.uuid4().hex[:6]}", input=json.dumps(payload)
        )["executionArn"]
        pending = wait_for_pending(o, arn)
        while_waiting = o.get_json(POINTER)
        out = io.StringIO()
        code = 0
        if answer is not None:
            with contextlib.redirect_stdout(out):
                code = main(["model", *answer, "--dataset", DATASET, "--bucket", o.bucket, "--json"])
        result = execution_result(o.sfn, arn, timeout_s=300)
        messages = o.notifications(o.sign_off_queue_url)
        after = o.get_json(POINTER)
        done[name] = Run(result, while_waiting, pending, after, (code, out.getvalue()), messages)

    run("first-approved", signed, ["approve", "--note", "first model for the site; gate figures read"])
    promote_env["CANDIDATE_TRIAL"] = "true"
    try:
        run("candidate-rejected", signed, ["reject", "--note", "viral recall fell on reviewed images"])
        run("candidate-approved", signed, ["approve", "--note", "scorecard agrees"])
        run("candidate-timed-out", hurried, None)
    finally:
        del promote_env["CANDIDATE_TRIAL"]
    not_required = o.run(payload, name=f"not-required-{uuid.uuid4().hex[:6]}")
    done["not-required"] = Run(not_required, None, None, o.get_json(POINTER), (0, ""), [])
    return done


def version_of(run: Run) -> str:
    return run.result.output["training"]["TrainingJobName"]


def test_without_production_the_workflow_waits_and_an_approval_makes_the_model_production(runs):
    run = runs["first-approved"]
    assert run.result.status == "SUCCEEDED"
    states = run.result.states_entered()
    assert states[-4:] == ["StageForSignOff", "AwaitSignOff", "SignOff", "SignedOff"]
    assert "Promote" not in states
    assert run.pointer_while_waiting is None  # nothing served before the sign-off
    assert run.pending["stage"] == "pending" and run.pending["version"] == version_of(run)
    pointer = run.pointer_after
    assert pointer["version"] == version_of(run)
    head = pointer["history"][0]
    assert head["action"] == "promote after sign-off"
    sign_off = head["sign_off"]
    assert sign_off["outcome"] == "approved" and sign_off["by"].startswith("arn:aws:")
    assert sign_off["note"] == "first model for the site; gate figures read"
    assert sign_off["scorecard"] is None  # no trial ran: no scorecard to copy
    code, out = run.cli
    assert code == 0 and json.loads(out)["decision"]["outcome"] == "approved"


def test_the_request_is_published_with_the_gates_numbers_and_never_the_token(runs):
    run = runs["first-approved"]
    (message,) = run.sign_off_messages
    assert message["version"] == version_of(run) and message["dataset"] == DATASET
    assert message["gate"]["outcome"] == "pass" and "accuracy" in message["gate"]["metrics"]
    assert "medimage model approve --dataset signed" in message["approve"]
    assert "task_token" not in json.dumps(message)
    assert run.pending["task_token"] not in json.dumps(message)
    # production.json, which serving reads, never holds a token.
    assert "task_token" not in json.dumps(runs["not-required"].pointer_after)


def test_a_rejected_candidate_leaves_production_and_ends_its_trial_rejected(runs):
    run = runs["candidate-rejected"]
    first = version_of(runs["first-approved"])
    assert run.result.status == "SUCCEEDED"
    assert run.result.states_entered()[-2:] == ["RecordRejection", "SignOffRejected"]
    assert run.pending["stage"] == "candidate"
    assert run.pending["scorecard_key"] == f"trials/{DATASET}/{version_of(run)}/scorecard.json"
    # While waiting, the candidate ran beside production (its silent trial).
    assert run.pointer_while_waiting["candidate"]["version"] == version_of(run)
    assert run.pointer_while_waiting["version"] == first
    pointer = run.pointer_after
    assert pointer["version"] == first and pointer["candidate"] is None
    trial = pointer["trials"][0]
    assert trial["version"] == version_of(run) and trial["outcome"] == "rejected"
    assert trial["sign_off"]["note"] == "viral recall fell on reviewed images"
    assert trial["sign_off"]["by"].startswith("arn:aws:")
    assert trial["scorecard"]["pairs"] == 0  # the scorecard of that moment (no images reached it here)


def test_an_approved_candidate_becomes_production_with_approver_note_and_scorecard(runs):
    run = runs["candidate-approved"]
    assert run.result.status == "SUCCEEDED"
    assert run.result.states_entered()[-2:] == ["SignOff", "SignedOff"]
    pointer = run.pointer_after
    assert pointer["version"] == version_of(run) and pointer["candidate"] is None
    head = pointer["history"][0]
    assert head["sign_off"]["note"] == "scorecard agrees"
    assert head["sign_off"]["scorecard"]["scorecard_key"].endswith(f"{version_of(run)}/scorecard.json")
    assert [e["version"] for e in pointer["history"][1:]] == [version_of(runs["first-approved"])]
    assert pointer["trials"][0]["outcome"] == "promoted"


def test_nobody_answering_times_out_and_leaves_production(runs):
    run = runs["candidate-timed-out"]
    assert run.result.status == "SUCCEEDED"
    assert run.result.states_entered()[-2:] == ["RecordTimeout", "SignOffTimedOut"]
    production_before = version_of(runs["candidate-approved"])
    assert run.pointer_after["version"] == production_before
    trial = run.pointer_after["trials"][0]
    assert trial["version"] == version_of(run) and trial["outcome"] == "timed_out"
    assert trial["sign_off"]["by"] is None


def test_every_decision_is_kept_in_the_sign_off_record_without_tokens(orchestration, runs):
    record = orchestration.get_json(sign_off_key(DATASET))
    assert record["pending"] is None
    outcomes = [(d["version"], d["outcome"]) for d in record["decided"]]
    assert outcomes == [
        (version_of(runs["candidate-timed-out"]), "timed_out"),
        (version_of(runs["candidate-approved"]), "approved"),
        (version_of(runs["candidate-rejected"]), "rejected"),
        (version_of(runs["first-approved"]), "approved"),
    ]
    assert "task_token" not in json.dumps(record["decided"])


def test_without_approval_required_the_workflow_promotes_as_before(runs):
    run = runs["not-required"]
    assert run.result.status == "SUCCEEDED"
    states = run.result.states_entered()
    assert states[-2:] == ["Promote", "Promoted"]
    assert not {"StageForSignOff", "AwaitSignOff", "SignOff"} & set(states)
    assert run.pointer_after["version"] == version_of(run)
    assert "sign_off" not in run.pointer_after["history"][0]


def test_model_list_shows_who_signed_off(orchestration, runs, capsys):
    code = main(["model", "list", "--dataset", DATASET, "--bucket", orchestration.bucket])
    out = capsys.readouterr().out
    assert code == 0
    approved = version_of(runs["candidate-approved"])
    assert f"{approved} signed off by arn:aws:" in out and "scorecard agrees" in out
    assert f"sign-off of {version_of(runs['candidate-rejected'])}: rejected" in out
