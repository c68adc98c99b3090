"""The translated template wires events to functions as the design says (the README's architecture):

  incoming/labeled/...   -> S3 notification -> AnnotateQueue -> annotate
  incoming/labeled/<ds>/_commit -> EventBridge rule -> split
  incoming/unlabeled/... -> S3 notification -> inference queue -> inference
  API POST /predict      -> inference
  training state machine -> gate, promote

Inference is found by what consumes the unlabeled queue."""

from __future__ import annotations

import json

import pytest
from template_model import (
    as_list,
    bucket_queue_notifications,
    event_source_mappings,
    function_target,
    grants,
    lambda_functions,
    props,
    resources,
    role_of,
    target,
)

pytestmark = pytest.mark.xdist_group("template")

LABELED = "incoming/labeled/"
UNLABELED = "incoming/unlabeled/"


def queue_for_prefix(cfn, prefix):
    queues = [q for p, q in bucket_queue_notifications(cfn) if p == prefix]
    return queues


def consumers(cfn, queue):
    return sorted(fn for q, fn in event_source_mappings(cfn) if q == queue)


def inference_function(cfn):
    queues = queue_for_prefix(cfn, UNLABELED)
    assert queues, "an S3 notification for incoming/unlabeled/ feeds a queue"
    found = consumers(cfn, queues[0])
    assert len(found) == 1, f"one function must consume the unlabeled queue {queues[0]}, found {found}"
    return found[0]


def test_labeled_uploads_reach_annotate_through_its_queue(cfn):
    queues = queue_for_prefix(cfn, LABELED)
    assert queues == ["AnnotateQueue"], bucket_queue_notifications(cfn)
    assert consumers(cfn, "AnnotateQueue") == ["AnnotateFunction"]
    esm = next(
        props(r)
        for r in resources(cfn, "AWS::Lambda::EventSourceMapping").values()
        if target(props(r).get("EventSourceArn")) == "AnnotateQueue"
    )
    assert "ReportBatchItemFailures" in esm.get("FunctionResponseTypes", []), (
        "one bad image must not fail a batch"
    )


def test_the_bucket_may_send_to_the_annotate_queue(cfn):
    policy = next(
        props(p)["PolicyDocument"]
        for p in resources(cfn, "AWS::SQS::QueuePolicy").values()
        if "AnnotateQueue" in [target(q) for q in props(p)["Queues"]]
    )
    allowed = [
        st
        for st in policy["Statement"]
        if st["Effect"] == "Allow"
        and "sqs:SendMessage" in as_list(st["Action"])
        and "s3.amazonaws.com" in as_list(st["Principal"].get("Service"))
    ]
    assert allowed and all(st.get("Condition") for st in allowed), "S3 may send, and only from this account"


def test_commit_marker_reaches_split_through_eventbridge(cfn):
    bucket = props(cfn["Resources"]["DataBucket"])
    assert bucket["NotificationConfiguration"]["EventBridgeConfiguration"]["EventBridgeEnabled"] is True
    rules = []
    for name, rule in resources(cfn, "AWS::Events::Rule").items():
        pattern = props(rule).get("EventPattern", {})
        keys = pattern.get("detail", {}).get("object", {}).get("key", [])
        if any(isinstance(k, dict) and k.get("wildcard") == "incoming/labeled/*/_commit" for k in keys):
            rules.append((name, [function_target(cfn, t["Arn"]) for t in props(rule)["Targets"]], pattern))
    assert len(rules) == 1, rules
    name, targets, pattern = rules[0]
    assert targets == ["SplitFunction"]
    assert pattern["source"] == ["aws.s3"] and pattern["detail-type"] == ["Object Created"]
    assert target(pattern["detail"]["bucket"]["name"][0]) == "DataBucket"
    permissions = [
        props(p)
        for p in resources(cfn, "AWS::Lambda::Permission").values()
        if function_target(cfn, props(p).get("FunctionName")) == "SplitFunction"
        and target(props(p).get("SourceArn")) == name
    ]
    assert permissions and permissions[0]["Principal"] == "events.amazonaws.com"


def test_nothing_else_consumes_labeled_or_commit_events(cfn):
    notified = [
        q for p, q in bucket_queue_notifications(cfn) if p.startswith(LABELED) or LABELED.startswith(p)
    ]
    assert notified == ["AnnotateQueue"], "a labeled upload must reach exactly one queue"


def test_unlabeled_uploads_reach_inference_through_its_queue(cfn):
    function = inference_function(cfn)
    fn = props(cfn["Resources"][function])
    assert fn.get("PackageType") == "Image", "inference runs as a container image (LiteRT)"
    queue = queue_for_prefix(cfn, UNLABELED)[0]
    assert queue != "AnnotateQueue"


def test_api_reaches_inference(cfn):
    function = inference_function(cfn)
    apis = resources(cfn, "AWS::ApiGateway::RestApi") | resources(cfn, "AWS::ApiGatewayV2::Api")
    assert apis, "the template declares the inference API"
    body = json.dumps([props(a).get("Body", {}) for a in apis.values()])
    assert "/predict" in body, "the API has a /predict route"
    invoked = [
        function_target(cfn, props(p).get("FunctionName"))
        for p in resources(cfn, "AWS::Lambda::Permission").values()
        if props(p).get("Principal") == "apigateway.amazonaws.com"
    ]
    assert function in invoked, f"API Gateway may invoke {function}"


def test_state_machine_invokes_gate_and_promote(cfn):
    machines = resources(cfn, "AWS::StepFunctions::StateMachine")
    assert sorted(machines) == ["BulkImportStateMachine", "TrainingStateMachine"]
    machine = props(machines["TrainingStateMachine"])
    role = target(machine["RoleArn"])
    invocable = [
        json.dumps(resource) for action, resource, _ in grants(cfn, role) if action == "lambda:InvokeFunction"
    ]
    for function in ("GateFunction", "PromoteFunction"):
        assert any(f'"{function}"' in r for r in invocable), (function, invocable)
        assert function in json.dumps(machine.get("DefinitionSubstitutions", {}))


def test_split_starts_the_training_state_machine(cfn):
    role = role_of(cfn, "SplitFunction")
    starts = [target(r) for a, r, _ in grants(cfn, role) if a == "states:StartExecution"]
    assert starts == ["TrainingStateMachine"]
    env = props(cfn["Resources"]["SplitFunction"])["Environment"]["Variables"]
    assert target(env["STATE_MACHINE_ARN"]) == "TrainingStateMachine"


def test_every_function_is_reached_by_something(cfn):
    """No orphan: each function has an event source, a rule, an API or the state machine calling it."""
    reached = {fn for _, fn in event_source_mappings(cfn)}
    reached |= {
        function_target(cfn, p["FunctionName"])
        for p in map(props, resources(cfn, "AWS::Lambda::Permission").values())
    }
    machine_text = json.dumps([props(m) for m in resources(cfn, "AWS::StepFunctions::StateMachine").values()])
    reached |= {fn for fn in lambda_functions(cfn) if fn in machine_text}
    orphans = sorted(set(lambda_functions(cfn)) - reached)
    assert not orphans, orphans
