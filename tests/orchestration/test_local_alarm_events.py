"""Local mode's alarm events (medimage.local.alarm_events): the template's alarm properties as PutMetricAlarm
arguments, and a state change as the event the rollback function reads. No AWS."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from medimage.local.alarm_events import put_metric_alarm_arguments, state_change_entry
from medimage.services.alarm_rollback import AlarmEvent

CHANGED = datetime(2026, 12, 7, 10, 4, 40, 985000, tzinfo=UTC)


def as_delivered(entry: dict) -> dict:
    """A PutEvents entry as EventBridge hands it to a rule's target."""
    return {
        "version": "0",
        "id": "1",
        "detail-type": entry["DetailType"],
        "source": entry["Source"],
        "time": entry["Time"].strftime("%Y-%m-%dT%H:%M:%SZ"),
        "resources": entry["Resources"],
        "detail": json.loads(entry["Detail"]),
    }


def test_template_properties_become_put_metric_alarm_arguments_with_their_types():
    props = {
        "AlarmDescription": "review rate",
        "Metrics": [
            {
                "Id": "review",
                "ReturnData": "false",
                "MetricStat": {
                    "Metric": {
                        "Namespace": "medimage",
                        "MetricName": "NeedsReview",
                        "Dimensions": [{"Name": "dataset", "Value": "chestxray2017"}],
                    },
                    "Period": "3600",
                    "Stat": "Sum",
                },
            },
            {"Id": "rate", "Expression": "review / 1", "ReturnData": True},
        ],
        "EvaluationPeriods": "1",
        "Threshold": "0.4",
        "ComparisonOperator": "GreaterThanThreshold",
        "AlarmActions": ["arn:aws:sns:us-east-1:123456789012:topic"],
    }
    arguments = put_metric_alarm_arguments("stack-Alarm", props)
    assert arguments["AlarmName"] == "stack-Alarm"
    assert arguments["Threshold"] == 0.4 and arguments["EvaluationPeriods"] == 1
    review, rate = arguments["Metrics"]
    assert review["ReturnData"] is False and review["MetricStat"]["Period"] == 3600
    assert rate["ReturnData"] is True
    assert "Namespace" not in arguments and "Period" not in arguments


def test_a_metric_math_alarm_state_change_is_read_by_the_rollback_service_with_its_dataset():
    alarm = {
        "AlarmName": "medimage-local-InferenceReviewRateAlarm",
        "AlarmArn": "arn:aws:cloudwatch:us-east-1:123456789012:alarm:medimage-local-InferenceReviewRateAlarm",
        "AlarmDescription": "review rate",
        "StateValue": "ALARM",
        "StateReason": "forced",
        "StateUpdatedTimestamp": CHANGED,
        "Metrics": [
            {
                "Id": "review",
                "ReturnData": False,
                "MetricStat": {
                    "Metric": {
                        "Namespace": "medimage",
                        "MetricName": "NeedsReview",
                        "Dimensions": [
                            {"Name": "dataset", "Value": "chestxray2017"},
                            {"Name": "service", "Value": "inference"},
                        ],
                    },
                    "Period": 3600,
                    "Stat": "Sum",
                },
            },
            {"Id": "rate", "Expression": "review / 1", "Label": "review rate", "ReturnData": True},
        ],
    }
    entry = state_change_entry(alarm, {"value": "OK", "reason": "", "timestamp": "earlier"})
    assert entry["Source"] == "aws.cloudwatch" and entry["DetailType"] == "CloudWatch Alarm State Change"
    assert entry["Resources"] == [alarm["AlarmArn"]]
    detail = json.loads(entry["Detail"])
    assert detail["state"]["timestamp"] == "2026-12-07T10:04:40.985+0000"
    assert detail["configuration"]["metrics"][0]["metricStat"]["metric"]["dimensions"] == {
        "dataset": "chestxray2017",
        "service": "inference",
    }
    parsed = AlarmEvent.from_event(as_delivered(entry))
    assert parsed == AlarmEvent(alarm["AlarmName"], "ALARM", CHANGED, ("chestxray2017",))


def test_a_single_metric_alarm_state_change_carries_its_dimensions():
    alarm = {
        "AlarmName": "a",
        "AlarmArn": "arn:aws:cloudwatch:us-east-1:123456789012:alarm:a",
        "StateValue": "OK",
        "StateUpdatedTimestamp": CHANGED,
        "Namespace": "AWS/SQS",
        "MetricName": "ApproximateNumberOfMessagesVisible",
        "Dimensions": [{"Name": "QueueName", "Value": "dead-letters"}],
        "Statistic": "Maximum",
        "Period": 300,
    }
    detail = json.loads(state_change_entry(alarm, {"value": "ALARM"})["Detail"])
    (metric,) = detail["configuration"]["metrics"]
    assert metric["metricStat"]["metric"] == {
        "namespace": "AWS/SQS",
        "name": "ApproximateNumberOfMessagesVisible",
        "dimensions": {"QueueName": "dead-letters"},
    }
    assert metric["metricStat"]["stat"] == "Maximum" and detail["previousState"] == {"value": "ALARM"}
    assert AlarmEvent.from_event(as_delivered(state_change_entry(alarm, {}))).datasets == ()
