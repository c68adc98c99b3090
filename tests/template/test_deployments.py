"""Code deploys can be undone by an alarm: in the translated template each function has the alias `live`
(a new version per deploy), a CodeDeploy deployment group that shifts it (canary in prod, all at once in
dev) and rolls back on that function's error and latency alarms, and every caller calls the alias."""

from __future__ import annotations

import json

import pytest
from template_model import function_target, lambda_functions, props, resources, sub_text, target

pytestmark = pytest.mark.xdist_group("template")

ALIAS = "live"


def alias_of(cfn, function: str) -> str:
    aliases = [
        name
        for name, res in resources(cfn, "AWS::Lambda::Alias").items()
        if target(props(res)["FunctionName"]) == function
    ]
    assert len(aliases) == 1, f"{function}: one alias, found {aliases}"
    return aliases[0]


def deployment_group_of(cfn, function: str) -> dict:
    alias = cfn["Resources"][alias_of(cfn, function)]
    update = alias["UpdatePolicy"]["CodeDeployLambdaAliasUpdate"]
    group = target(update["DeploymentGroupName"])
    assert cfn["Resources"][group]["Type"] == "AWS::CodeDeploy::DeploymentGroup"
    return props(cfn["Resources"][group])


@pytest.mark.parametrize(
    "function",
    [
        "AnnotateFunction",
        "SplitFunction",
        "GateFunction",
        "PromoteFunction",
        "InferenceFunction",
        "RollbackFunction",
        "PackFunction",
        "BulkCopyFunction",
    ],
)
def test_each_function_has_an_alias_a_deployment_group_and_its_rollback_alarms(cfn, function):
    assert function in lambda_functions(cfn)
    alias = props(cfn["Resources"][alias_of(cfn, function)])
    assert alias["Name"] == ALIAS
    assert cfn["Resources"][target(alias["FunctionVersion"])]["Type"] == "AWS::Lambda::Version"

    group = deployment_group_of(cfn, function)
    assert group["AutoRollbackConfiguration"]["Enabled"] is True
    assert "DEPLOYMENT_STOP_ON_ALARM" in group["AutoRollbackConfiguration"]["Events"]
    assert group["AlarmConfiguration"]["Enabled"] is True
    alarms = {target(a["Name"]) for a in group["AlarmConfiguration"]["Alarms"]}
    metrics = {}
    for name in alarms:
        alarm = props(cfn["Resources"][name])
        dims = {d["Name"]: d["Value"] for d in alarm["Dimensions"]}
        # The alias's own metrics: what the new version does while traffic shifts to it.
        assert target(dims["FunctionName"]) == function, name
        assert sub_text(dims["Resource"]) == f"${{{function}}}:{ALIAS}", name
        assert alarm["AlarmActions"], f"{name} notifies someone"
        metrics[alarm["MetricName"]] = alarm
    assert set(metrics) == {"Errors", "Duration"}, f"{function}: alarms on {sorted(metrics)}"
    timeout_ms = props(cfn["Resources"][function])["Timeout"] * 1000
    assert 0 < metrics["Duration"]["Threshold"] < timeout_ms


def test_prod_shifts_traffic_as_a_canary_and_dev_all_at_once(cfn):
    assert cfn["Parameters"]["Stage"]["AllowedValues"] == ["dev", "prod"]
    for function in lambda_functions(cfn):
        config = deployment_group_of(cfn, function)["DeploymentConfigName"]
        assert "Fn::If" in config, f"{function}: the deployment type depends on the stage"
        condition, prod, dev = config["Fn::If"]
        assert condition == "IsProd", function
        assert "Canary" in json.dumps(prod) or "Linear" in json.dumps(prod), function
        assert "AllAtOnce" in json.dumps(dev), function
    assert cfn["Conditions"]["IsProd"] == {"Fn::Equals": [{"Ref": "Stage"}, "prod"]}


def test_samconfig_stages_name_their_stage():
    import tomllib

    from template_model import REPO

    config = tomllib.loads((REPO / "samconfig.toml").read_text(encoding="utf-8"))
    for stage in ("dev", "prod"):
        overrides = config[stage]["deploy"]["parameters"]["parameter_overrides"].split()
        assert f"Stage={stage}" in overrides


def test_callers_call_the_alias_not_the_unqualified_function(cfn):
    aliases = {alias_of(cfn, f): f for f in lambda_functions(cfn)}
    for name, res in resources(cfn, "AWS::Lambda::EventSourceMapping").items():
        assert target(props(res)["FunctionName"]) in aliases, name
    for name, res in resources(cfn, "AWS::Lambda::Permission").items():
        assert target(props(res)["FunctionName"]) in aliases, name
    for name, rule in resources(cfn, "AWS::Events::Rule").items():
        for t in props(rule).get("Targets", []):
            if function_target(cfn, t["Arn"]) in lambda_functions(cfn):
                assert target(t["Arn"]) in aliases, name
    machine = props(cfn["Resources"]["TrainingStateMachine"])
    subs = machine["DefinitionSubstitutions"]
    assert target(subs["GateFunctionArn"]) == alias_of(cfn, "GateFunction")
    assert target(subs["PromoteFunctionArn"]) == alias_of(cfn, "PromoteFunction")
    assert target(subs["PackFunctionArn"]) == alias_of(cfn, "PackFunction")
    body = json.dumps(props(cfn["Resources"]["InferenceApi"])["Body"])
    inference_alias = alias_of(cfn, "InferenceFunction")
    assert "${InferenceFunction.Arn}" not in body
    assert body.count(f"${{{inference_alias}}}") == body.count("/invocations")


def test_codedeploy_may_move_only_this_stacks_aliases_and_read_its_alarms(cfn):
    groups = resources(cfn, "AWS::CodeDeploy::DeploymentGroup")
    roles = {target(props(g)["ServiceRoleArn"]) for g in groups.values()}
    assert len(roles) == 1
    (role,) = roles
    role_props = props(cfn["Resources"][role])
    assert not role_props.get("ManagedPolicyArns"), "no managed policy: SAM's default reads every S3 object"
    (trust,) = role_props["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "codedeploy.amazonaws.com"}
    statements = [st for p in role_props["Policies"] for st in p["PolicyDocument"]["Statement"]]
    for st in statements:
        assert "*" not in json.dumps(st["Action"]), st
        assert st["Resource"] != "*", st
    alarms = {target(a["Name"]) for g in groups.values() for a in props(g)["AlarmConfiguration"]["Alarms"]}
    described = {
        target(r) for st in statements if st["Action"] == "cloudwatch:DescribeAlarms" for r in st["Resource"]
    }
    assert described == alarms
