"""Test-side helpers for the training state machine: create it in moto, run one execution to its end and
read back its status, output and full history."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from medimage.local.account import ACCOUNT
from medimage.ops.executions import wait_for_execution

LOCAL_STATES_ROLE = f"arn:aws:iam::{ACCOUNT}:role/medimage-local-states"


def create_state_machine(sfn: Any, definition: str, name: str, role_arn: str = LOCAL_STATES_ROLE) -> str:
    return sfn.create_state_machine(name=name, definition=definition, roleArn=role_arn)["stateMachineArn"]


@dataclass(frozen=True)
class ExecutionResult:
    arn: str
    status: str
    output: dict[str, Any] | None
    error: str | None
    cause: str | None
    history: list[dict[str, Any]]

    def states_entered(self) -> list[str]:
        return [
            e["stateEnteredEventDetails"]["name"] for e in self.history if "stateEnteredEventDetails" in e
        ]

    def events(self, event_type: str) -> list[dict[str, Any]]:
        return [e for e in self.history if e["type"] == event_type]


def run_execution(
    sfn: Any,
    state_machine_arn: str,
    payload: dict[str, Any],
    name: str | None = None,
    timeout_s: float = 600.0,
    poll_s: float = 0.2,
) -> ExecutionResult:
    """Start an execution and wait until it ends; its status, output and full history."""
    name = name or f"local-{uuid.uuid4().hex[:12]}"
    arn = sfn.start_execution(stateMachineArn=state_machine_arn, name=name, input=json.dumps(payload))[
        "executionArn"
    ]
    return execution_result(sfn, arn, timeout_s, poll_s)


def execution_result(sfn: Any, arn: str, timeout_s: float = 600.0, poll_s: float = 0.2) -> ExecutionResult:
    """Wait until the execution ``arn`` ends; its status, output and full history."""
    described = wait_for_execution(sfn, arn, timeout_s=timeout_s, poll_s=poll_s)
    history: list[dict[str, Any]] = []
    for page in sfn.get_paginator("get_execution_history").paginate(executionArn=arn):
        history.extend(page["events"])
    output = described.get("output")
    return ExecutionResult(
        arn,
        described["status"],
        json.loads(output) if output else None,
        described.get("error"),
        described.get("cause"),
        history,
    )
