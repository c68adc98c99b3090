"""The local stack (`medimage up`, `make demo`, the tests' LocalAws) honours ApprovalRequired and
ApprovalTimeoutHours: they reach the state machine it creates, and the promote function its sign-off topic."""

from __future__ import annotations

import json
from typing import Any

import pytest

from medimage.cli.up_cmd import _parameters


def stack(parameters: dict[str, str]) -> tuple[dict[str, Any], Any]:
    from medimage.local.environment import LocalAws

    env = LocalAws(parameters=parameters).create()
    sfn = env.client("stepfunctions")
    definition = json.loads(sfn.describe_state_machine(stateMachineArn=env.state_machine_arn)["definition"])
    return definition, env


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ([], {"required": "false", "timeout_hours": "72"}),
        (
            ["ApprovalRequired=true", "ApprovalTimeoutHours=0.5"],
            {"required": "true", "timeout_hours": "0.5"},
        ),
    ],
)
def test_up_parameters_reach_the_sign_off_policy_of_the_state_machine(arguments, expected):
    from moto import mock_aws

    with mock_aws():
        definition, env = stack(_parameters(arguments))
        assert definition["States"]["SignOffPolicy"]["Result"] == expected
        topic = env.functions["PromoteFunction"].environment["SIGN_OFF_TOPIC_ARN"]
        assert topic == env.refs["SignOffTopic"] and topic.startswith("arn:aws:sns:")
        topics = env.client("sns").list_topics()["Topics"]
        assert topic in {t["TopicArn"] for t in topics}
