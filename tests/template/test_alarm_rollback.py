"""The automatic rollback's wiring in the translated template: an EventBridge rule on the inference alarms'
state changes to ALARM invokes the rollback function (through its alias), switched by RollbackWatchMinutes,
and the function may only swap production.json and read the model it swaps back to."""

from __future__ import annotations

import pytest
from template_model import function_target, grants, props, resources, role_of, s3_object_prefix, target

pytestmark = pytest.mark.xdist_group("template")

FUNCTION = "RollbackFunction"
WATCHED = ["InferenceReviewRateAlarm"]


def alarm_rules(cfn):
    return {
        name: props(rule)
        for name, rule in resources(cfn, "AWS::Events::Rule").items()
        if props(rule).get("EventPattern", {}).get("source") == ["aws.cloudwatch"]
    }


def test_alarm_state_changes_to_alarm_of_the_watched_alarms_reach_the_rollback_function(cfn):
    rules = alarm_rules(cfn)
    assert list(rules) == ["RollbackFunctionInferenceAlarm"], rules
    rule = rules["RollbackFunctionInferenceAlarm"]
    pattern = rule["EventPattern"]
    assert pattern["detail-type"] == ["CloudWatch Alarm State Change"]
    assert pattern["detail"] == {"state": {"value": ["ALARM"]}}
    assert [target(r) for r in pattern["resources"]] == WATCHED
    assert all(r == {"Fn::GetAtt": [a, "Arn"]} for r, a in zip(pattern["resources"], WATCHED, strict=True))
    (rule_target,) = rule["Targets"]
    assert function_target(cfn, rule_target["Arn"]) == FUNCTION
    assert target(rule_target["DeadLetterConfig"]["Arn"]) == "RollbackDeadLetterQueue"
    assert rule_target["RetryPolicy"]["MaximumRetryAttempts"] >= 1


def test_the_rule_may_invoke_the_function_and_nothing_else_may(cfn):
    permissions = [
        props(p)
        for p in resources(cfn, "AWS::Lambda::Permission").values()
        if function_target(cfn, props(p)["FunctionName"]) == FUNCTION
    ]
    assert len(permissions) == 1, permissions
    (permission,) = permissions
    assert permission["Principal"] == "events.amazonaws.com"
    assert permission["Action"] == "lambda:InvokeFunction"
    assert target(permission["SourceArn"]) == "RollbackFunctionInferenceAlarm"


def test_a_watch_window_of_zero_disables_the_rule_and_the_function_reads_the_same_settings(cfn):
    parameter = cfn["Parameters"]["RollbackWatchMinutes"]
    assert parameter["Type"] == "Number" and int(parameter["Default"]) > 0 and parameter["MinValue"] == 0
    condition = cfn["Conditions"]["AutoRollback"]
    assert condition == {"Fn::Not": [{"Fn::Equals": [{"Ref": "RollbackWatchMinutes"}, 0]}]}
    rule = alarm_rules(cfn)["RollbackFunctionInferenceAlarm"]
    assert rule["State"] == {"Fn::If": ["AutoRollback", "ENABLED", "DISABLED"]}
    env = props(cfn["Resources"][FUNCTION])["Environment"]["Variables"]
    assert env["ROLLBACK_WATCH_MINUTES"] == {"Ref": "RollbackWatchMinutes"}
    assert env["DEFAULT_DATASET"] == {"Ref": "InferenceDefaultDataset"}
    assert env["DATA_BUCKET"] == {"Ref": "DataBucket"}
    # The function ignores the events of alarms it is not told about: the same alarms as the pattern.
    assert env["ROLLBACK_ALARMS"] == {"Ref": WATCHED[0]}


def test_the_watched_alarm_carries_the_dataset_it_rolls_back(cfn):
    for alarm in WATCHED:
        metrics = props(cfn["Resources"][alarm])["Metrics"]
        datasets = {
            target(d["Value"])
            for m in metrics
            if "MetricStat" in m
            for d in m["MetricStat"]["Metric"]["Dimensions"]
            if d["Name"] == "dataset"
        }
        assert datasets == {"InferenceDefaultDataset"}, alarm


def test_the_function_may_swap_only_production_json_and_read_models(cfn):
    role = role_of(cfn, FUNCTION)
    assert role is not None
    s3_writes = set()
    s3_reads = set()
    others = set()
    for action, resource, _ in grants(cfn, role):
        if action in ("s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"):
            s3_writes.add(s3_object_prefix(resource))
        elif action == "s3:GetObject":
            s3_reads.add(s3_object_prefix(resource))
        elif not action.startswith(("logs:", "xray:", "s3:ListBucket")):
            others.add(action)
    assert s3_writes == {"models/*/production.json"}
    assert s3_reads == {"models/*/production.json", "models/*"}
    # Sending a failed event to the encrypted dead-letter queue; nothing else.
    assert others == {"sqs:SendMessage", "kms:Decrypt", "kms:GenerateDataKey"}, others


def test_the_function_is_capped_and_its_dead_letters_alarm(cfn):
    function = props(cfn["Resources"][FUNCTION])
    assert function["ReservedConcurrentExecutions"] == 1
    assert target(function["DeadLetterConfig"]["TargetArn"]) == "RollbackDeadLetterQueue"
    alarms = [
        props(a)
        for a in resources(cfn, "AWS::CloudWatch::Alarm").values()
        if any(target(d["Value"]) == "RollbackDeadLetterQueue" for d in props(a).get("Dimensions", []))
    ]
    assert len(alarms) == 1 and alarms[0]["AlarmActions"]
