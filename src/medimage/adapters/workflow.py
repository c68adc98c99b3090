"""Starting executions of the training state machine."""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import ClientError

from medimage.adapters.aws import client


class StepFunctionsWorkflow:
    def __init__(self, state_machine_arn: str, sfn: Any | None = None) -> None:
        self.state_machine_arn = state_machine_arn
        self._sfn = sfn or client("stepfunctions")

    def start(self, name: str, payload: dict[str, Any]) -> str:
        """Start once: the execution name is derived from the manifest version, so a second delivery
        of the same commit finds the execution already there instead of training twice."""
        try:
            res = self._sfn.start_execution(
                stateMachineArn=self.state_machine_arn, name=name, input=json.dumps(payload)
            )
            return res["executionArn"]
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ExecutionAlreadyExists":
                raise
            arn = self.state_machine_arn.replace(":stateMachine:", ":execution:")
            return f"{arn}:{name}"
