"""The rollback handler (functions/rollback) on moto: an alarm event rolls production.json back through the
registry's conditional write, once, and `medimage model list` shows the alarm; and the local stack turns
a forced alarm (set_alarm_state) into the event the template's rule delivers to it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from medimage.adapters.registry_store import S3RegistryStore
from medimage.core.registry import ModelEntry, promote, sha256_hex
from medimage.local.account import REGION
from medimage.local.functions import LocalFunction
from tests.conftest import EVENT_BUCKET

REPO = Path(__file__).resolve().parents[2]
DS = "chestxray2017"
ALARM = "medimage-InferenceReviewRateAlarm-1A2B3C"


def rollback_function(**env: str) -> LocalFunction:
    settings = {
        "POWERTOOLS_SERVICE_NAME": "rollback",
        "DATA_BUCKET": EVENT_BUCKET,
        "DEFAULT_DATASET": DS,
        "ROLLBACK_ALARMS": ALARM,
        "ROLLBACK_WATCH_MINUTES": "60",
        **env,
    }
    return LocalFunction("rollback", REPO / "functions" / "rollback", "app.lambda_handler", settings)


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


def promote_versions(s3: Any, promoted_at: datetime, *versions: str) -> None:
    registry = S3RegistryStore(EVENT_BUCKET, s3=s3)
    for version in versions:
        key = f"models/{DS}/{version}/model.tflite"
        data = f"model {version}".encode()
        s3.put_object(Bucket=EVENT_BUCKET, Key=key, Body=data)
        entry = ModelEntry(version, key, sha256_hex(data), promoted_at.isoformat(), {"accuracy": 0.9})
        registry.update(DS, lambda current, e=entry: promote(current, DS, e, current and current.version))


def alarm_event(name: str = ALARM, changed: datetime | None = None) -> dict[str, Any]:
    changed = changed or datetime.now(UTC)
    return {
        "version": "0",
        "id": "c4c1c1c9-6542-e61b-6ef0-8c4d36933a92",
        "detail-type": "CloudWatch Alarm State Change",
        "source": "aws.cloudwatch",
        "account": "123456789012",
        "time": changed.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": REGION,
        "resources": [f"arn:aws:cloudwatch:{REGION}:123456789012:alarm:{name}"],
        "detail": {
            "alarmName": name,
            "state": {"value": "ALARM", "reason": "Threshold Crossed", "timestamp": changed.isoformat()},
            "previousState": {"value": "OK"},
            "configuration": {
                "metrics": [
                    {
                        "id": "review",
                        "metricStat": {
                            "metric": {
                                "namespace": "medimage",
                                "name": "NeedsReview",
                                "dimensions": {"dataset": DS, "service": "inference"},
                            },
                            "period": 3600,
                            "stat": "Sum",
                        },
                        "returnData": False,
                    }
                ]
            },
        },
    }


def pointer(s3: Any) -> dict[str, Any]:
    body = s3.get_object(Bucket=EVENT_BUCKET, Key=f"models/{DS}/production.json")["Body"].read()
    return json.loads(body)


def test_an_alarm_event_rolls_production_back_once_and_model_list_shows_the_alarm(s3, capsys):
    promote_versions(s3, datetime.now(UTC) - timedelta(minutes=10), "v1", "v2")
    function = rollback_function()
    result = function.invoke(alarm_event())
    assert result["rolled_back"] is True and result["code"] == "rolled_back"
    assert (result["version"], result["withdrawn"]) == ("v1", "v2")
    data = pointer(s3)
    assert data["version"] == "v1"
    assert data["history"][0]["action"] == f"rollback from v2 on alarm {ALARM}"
    assert data["rolled_back"][0]["reason"] == f"alarm {ALARM}"

    again = function.invoke(alarm_event())
    assert again["rolled_back"] is False and again["code"] == "already_rolled_back"
    assert pointer(s3)["version"] == "v1" and len(pointer(s3)["rolled_back"]) == 1

    from medimage.cli.main import main

    capsys.readouterr()
    assert main(["model", "list", "--dataset", DS, "--bucket", EVENT_BUCKET]) == 0
    listed = capsys.readouterr().out
    assert f"rollback from v2 on alarm {ALARM}" in listed
    assert listed.splitlines()[-1].split()[0] == "v2" and f"on alarm {ALARM}" in listed.splitlines()[-1]


def test_an_alarm_outside_the_window_or_of_another_alarm_changes_nothing(s3):
    promote_versions(s3, datetime.now(UTC) - timedelta(minutes=90), "v1", "v2")
    function = rollback_function()
    late = function.invoke(alarm_event())
    assert late["rolled_back"] is False and late["code"] == "outside_watch_window"
    other = function.invoke(alarm_event(name="another-alarm"))
    assert other["code"] == "unknown_alarm"
    assert pointer(s3)["version"] == "v2" and pointer(s3)["rolled_back"] == []


def test_an_alarm_before_any_promotion_finds_nothing_to_roll_back(s3):
    result = rollback_function().invoke(alarm_event())
    assert result["rolled_back"] is False and result["code"] == "no_production"


def test_an_event_that_is_not_an_alarm_state_change_fails_with_its_code(s3):
    with pytest.raises(Exception, match="CloudWatch Alarm State Change") as info:
        rollback_function().invoke({"source": "aws.s3", "detail-type": "Object Created", "detail": {}})
    assert getattr(info.value, "code", None) == "bad_alarm_event"


def test_the_local_stack_delivers_a_forced_alarm_to_the_rule_and_production_rolls_back():
    """In-process ``LocalAws``: the template's alarms exist in moto, a state change becomes the event
    CloudWatch would put, and moto's EventBridge matches it with the rule's pattern from template.yaml."""
    from moto import mock_aws

    from medimage.adapters.aws import reset_clients
    from medimage.local.environment import LocalAws, moto_config

    with mock_aws(config=moto_config()):
        reset_clients()
        try:
            env = LocalAws().create()
            s3 = env.client("s3")
            registry = S3RegistryStore(env.bucket, s3=s3)
            for version in ("v1", "v2"):
                key = f"models/{DS}/{version}/model.tflite"
                s3.put_object(Bucket=env.bucket, Key=key, Body=version.encode())
                entry = ModelEntry(version, key, sha256_hex(version.encode()), datetime.now(UTC).isoformat())
                registry.update(DS, lambda c, e=entry: promote(c, DS, e, c and c.version))
            env.pump()  # S3's test events to the queues' consumers
            cloudwatch = env.client("cloudwatch")
            name = env.refs["InferenceReviewRateAlarm"]
            # A state change of an alarm the rule does not name reaches no function.
            cloudwatch.set_alarm_state(
                AlarmName=env.refs["InferenceDeadLetterAlarm"], StateValue="ALARM", StateReason="forced"
            )
            assert env.pump().invocations == 0
            cloudwatch.set_alarm_state(AlarmName=name, StateValue="INSUFFICIENT_DATA", StateReason="forced")
            assert env.pump().invocations == 0  # the pattern takes ALARM only
            assert registry.pointer(DS).version == "v2"
            cloudwatch.set_alarm_state(AlarmName=name, StateValue="ALARM", StateReason="forced")
            report = env.pump()
            assert [fn for fn, _ in report.results] == ["RollbackFunction"], report.errors
            current = registry.pointer(DS)
            assert current is not None and current.version == "v1"
            assert current.current.action == f"rollback from v2 on alarm {name}"
            assert env.pump().invocations == 0  # no state change since: no event
        finally:
            reset_clients()


def test_the_recorded_event_of_the_review_rate_alarm_rolls_back_its_dataset(s3):
    """events/rollback-review-rate-alarm.json: the metric math alarm's event as EventBridge delivers it."""
    from tests.conftest import load_event

    event = load_event("rollback-review-rate-alarm.json")
    name = event["detail"]["alarmName"]
    changed = datetime.fromisoformat(event["detail"]["state"]["timestamp"])
    promote_versions(s3, changed - timedelta(minutes=59), "v1", "v2")
    result = rollback_function(ROLLBACK_ALARMS=name).invoke(event)
    assert result["rolled_back"] is True and result["dataset"] == DS
    assert pointer(s3)["history"][0]["action"] == f"rollback from v2 on alarm {name}"
