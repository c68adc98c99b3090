"""CloudWatch alarms in local mode: the template's alarms in moto, and their state changes as EventBridge
events.

moto's CloudWatch keeps an alarm's state (``set_alarm_state``, ``aws cloudwatch set-alarm-state``) but never
evaluates an alarm, emits no ``CloudWatch Alarm State Change`` event and has no alarm history (moto 5.2:
``describe_alarm_history`` is not implemented). ``AlarmEvents`` looks at ``describe_alarms`` and, for each
alarm whose state differs from the last look, puts the event CloudWatch would put on the default bus.
moto's EventBridge then matches it against the rules ``LocalAws`` created from the template, so which
alarms and states reach a function is decided by the pattern written in ``template.yaml``, not here.
``AlarmWatcher`` does that every ``ALARM_POLL_S`` seconds for ``medimage up``; ``LocalAws.pump()`` looks
once before it delivers.
"""

from __future__ import annotations

import json
import logging
import threading
from datetime import UTC, datetime
from typing import Any

log = logging.getLogger("medimage.local")

ALARM_POLL_S = 2.0
SOURCE = "aws.cloudwatch"
DETAIL_TYPE = "CloudWatch Alarm State Change"

# CloudFormation's AWS::CloudWatch::Alarm properties that PutMetricAlarm takes under the same name.
_PASSED = (
    "AlarmDescription",
    "ActionsEnabled",
    "OKActions",
    "AlarmActions",
    "InsufficientDataActions",
    "MetricName",
    "Namespace",
    "Statistic",
    "ExtendedStatistic",
    "Dimensions",
    "Unit",
    "ComparisonOperator",
    "TreatMissingData",
    "EvaluateLowSampleCountPercentile",
    "ThresholdMetricId",
)
_INTEGERS = ("Period", "EvaluationPeriods", "DatapointsToAlarm")


def _metric_query(query: dict[str, Any]) -> dict[str, Any]:
    out = dict(query)
    if "ReturnData" in out:
        out["ReturnData"] = str(out["ReturnData"]).lower() == "true"
    stat = out.get("MetricStat")
    if isinstance(stat, dict):
        metric = dict(stat.get("Metric") or {})
        metric["Dimensions"] = [
            {"Name": d["Name"], "Value": str(d["Value"])} for d in metric.get("Dimensions", [])
        ]
        out["MetricStat"] = {**stat, "Metric": metric, "Period": int(stat["Period"])}
    return out


def put_metric_alarm_arguments(name: str, props: dict[str, Any]) -> dict[str, Any]:
    """PutMetricAlarm's arguments for an alarm's resolved template properties (parameters arrive as text)."""
    arguments: dict[str, Any] = {"AlarmName": name}
    arguments.update({key: props[key] for key in _PASSED if key in props})
    arguments.update({key: int(props[key]) for key in _INTEGERS if key in props})
    if "Threshold" in props:
        arguments["Threshold"] = float(props["Threshold"])
    if "Dimensions" in arguments:
        arguments["Dimensions"] = [
            {"Name": d["Name"], "Value": str(d["Value"])} for d in arguments["Dimensions"]
        ]
    if "Metrics" in props:
        arguments["Metrics"] = [_metric_query(q) for q in props["Metrics"]]
    return arguments


def _cloudwatch_time(moment: datetime) -> str:
    """The timestamp format of CloudWatch's alarm events: ``2026-12-07T10:04:40.985+0000``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0000"


def _dimensions(dimensions: list[dict[str, Any]]) -> dict[str, str]:
    return {str(d["Name"]): str(d["Value"]) for d in dimensions}


def _configuration(alarm: dict[str, Any]) -> dict[str, Any]:
    """The alarm's ``configuration`` as the event carries it: its metrics, dimensions as an object."""
    metrics: list[dict[str, Any]] = []
    for query in alarm.get("Metrics") or []:
        item: dict[str, Any] = {"id": query["Id"], "returnData": bool(query.get("ReturnData", True))}
        if "Expression" in query:
            item |= {"expression": query["Expression"], "label": query.get("Label", "")}
        if "MetricStat" in query:
            stat, metric = query["MetricStat"], query["MetricStat"]["Metric"]
            item["metricStat"] = {
                "metric": {
                    "namespace": metric.get("Namespace"),
                    "name": metric.get("MetricName"),
                    "dimensions": _dimensions(metric.get("Dimensions", [])),
                },
                "period": stat.get("Period"),
                "stat": stat.get("Stat"),
            }
        metrics.append(item)
    if alarm.get("MetricName"):
        stat = alarm.get("Statistic") or alarm.get("ExtendedStatistic")
        metric = {
            "namespace": alarm.get("Namespace"),
            "name": alarm["MetricName"],
            "dimensions": _dimensions(alarm.get("Dimensions", [])),
        }
        metrics.append(
            {
                "id": "m1",
                "metricStat": {"metric": metric, "period": alarm.get("Period"), "stat": stat},
                "returnData": True,
            }
        )
    return {"description": alarm.get("AlarmDescription", ""), "metrics": metrics}


def state_change_entry(alarm: dict[str, Any], previous: dict[str, Any]) -> dict[str, Any]:
    """The PutEvents entry of ``alarm`` (a DescribeAlarms MetricAlarm) having left ``previous``
    (``{"value", "reason", "timestamp"}``)."""
    changed: datetime = alarm["StateUpdatedTimestamp"]
    state = {
        "value": alarm["StateValue"],
        "reason": alarm.get("StateReason", ""),
        "timestamp": _cloudwatch_time(changed),
    }
    if alarm.get("StateReasonData"):
        state["reasonData"] = alarm["StateReasonData"]
    detail = {
        "alarmName": alarm["AlarmName"],
        "state": state,
        "previousState": previous,
        "configuration": _configuration(alarm),
    }
    return {
        "Time": changed,
        "Source": SOURCE,
        "DetailType": DETAIL_TYPE,
        "Resources": [alarm["AlarmArn"]],
        "Detail": json.dumps(detail),
    }


class AlarmEvents:
    """Puts a ``CloudWatch Alarm State Change`` event for every alarm whose state changed since the last
    ``check()`` (the first look, ``prime()``, only records the states)."""

    def __init__(self, cloudwatch: Any, events: Any) -> None:
        self.cloudwatch = cloudwatch
        self.events = events
        self.states: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def _alarms(self) -> list[dict[str, Any]]:
        pages = self.cloudwatch.get_paginator("describe_alarms").paginate(AlarmTypes=["MetricAlarm"])
        return [alarm for page in pages for alarm in page.get("MetricAlarms", [])]

    @staticmethod
    def _state(alarm: dict[str, Any]) -> dict[str, Any]:
        return {
            "value": alarm["StateValue"],
            "reason": alarm.get("StateReason", ""),
            "timestamp": _cloudwatch_time(alarm["StateUpdatedTimestamp"]),
        }

    def prime(self) -> None:
        with self._lock:
            self.states = {a["AlarmName"]: self._state(a) for a in self._alarms()}

    def check(self) -> int:
        """Put the events of the state changes since the last look; how many were put."""
        with self._lock:
            entries = []
            for alarm in self._alarms():
                name = alarm["AlarmName"]
                previous = self.states.get(name)
                self.states[name] = self._state(alarm)
                if previous is not None and previous["value"] != alarm["StateValue"]:
                    entries.append(state_change_entry(alarm, previous))
                    log.info("alarm %s: %s -> %s", name, previous["value"], alarm["StateValue"])
            for start in range(0, len(entries), 10):  # PutEvents takes at most 10 entries
                self.events.put_events(Entries=entries[start : start + 10])
            return len(entries)


class AlarmWatcher(threading.Thread):
    """``AlarmEvents.check()`` every ``interval_s`` until ``stop`` is set."""

    def __init__(self, alarms: AlarmEvents, stop: threading.Event, interval_s: float = ALARM_POLL_S) -> None:
        super().__init__(name="alarm-events", daemon=True)
        self.alarms = alarms
        self.stop = stop
        self.interval_s = interval_s

    def run(self) -> None:
        while not self.stop.wait(self.interval_s):
            try:
                self.alarms.check()
            except Exception:  # the endpoint failed (the server is stopping): keep looking
                if self.stop.is_set():
                    return
                log.exception("looking at the alarms' states failed")


def create_alarms(
    template: dict[str, Any], resolver: Any, cloudwatch: Any, stack_name: str
) -> dict[str, tuple[str, str]]:
    """Every ``AWS::CloudWatch::Alarm`` of the template in moto, named ``<stack>-<logical id>``;
    logical id -> (name, ARN). ``resolver`` resolves the alarms' properties (topics, functions, queues)."""
    from medimage.template_file import resources_of_type

    created = {}
    for logical, res in resources_of_type(template, "AWS::CloudWatch::Alarm").items():
        name = f"{stack_name}-{logical}"
        props = resolver.resolve(res.get("Properties", {}))
        cloudwatch.put_metric_alarm(**put_metric_alarm_arguments(name, props))
        (alarm,) = cloudwatch.describe_alarms(AlarmNames=[name])["MetricAlarms"]
        created[logical] = (name, alarm["AlarmArn"])
    return created
