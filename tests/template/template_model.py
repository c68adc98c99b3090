"""Small readers over a (translated) CloudFormation template, for the template tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "template.yaml"

Json = dict[str, Any]


def resources(template: Json, kind: str | None = None) -> dict[str, Json]:
    return {
        name: res
        for name, res in template.get("Resources", {}).items()
        if kind is None or res.get("Type") == kind
    }


def props(resource: Json) -> Json:
    return resource.get("Properties", {}) or {}


def target(value: Any) -> str | None:
    """The logical id a Ref / Fn::GetAtt (or a Fn::Sub of one name) points at."""
    if isinstance(value, dict):
        if "Ref" in value:
            return value["Ref"]
        if "Fn::GetAtt" in value:
            att = value["Fn::GetAtt"]
            return att[0] if isinstance(att, list) else str(att).split(".")[0]
        if "Fn::Sub" in value:
            text = sub_text(value)
            if text.startswith("${") and text.endswith("}") and text.count("${") == 1:
                return text[2:-1].split(".")[0]
    return None


def function_target(cfn: Json, value: Any) -> str | None:
    """The function a reference calls: a function's logical id, or the function behind an alias
    (AutoPublishAlias makes event sources, permissions and the state machine call `<Function>Alias<name>`)."""
    name = target(value)
    resource = cfn.get("Resources", {}).get(name or "", {})
    if resource.get("Type") == "AWS::Lambda::Alias":
        return target(props(resource).get("FunctionName"))
    return name


def sub_text(value: Any) -> str:
    """The text of a string, or of a Fn::Sub (with its variables left as ${...})."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Fn::Sub" in value:
        sub = value["Fn::Sub"]
        return sub if isinstance(sub, str) else sub[0]
    return ""


def as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def lambda_functions(cfn: Json) -> dict[str, Json]:
    return resources(cfn, "AWS::Lambda::Function")


def role_of(cfn: Json, function: str) -> str | None:
    return target(props(cfn["Resources"][function]).get("Role"))


def statements(cfn: Json, role: str) -> Iterator[Json]:
    """The inline policy statements of an IAM role (and of IAM policies attached to it)."""
    for policy in props(cfn["Resources"][role]).get("Policies", []):
        yield from as_list(policy.get("PolicyDocument", {}).get("Statement"))
    for res in resources(cfn).values():
        if res.get("Type") in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy") and role in [
            target(r) for r in as_list(props(res).get("Roles"))
        ]:
            yield from as_list(props(res).get("PolicyDocument", {}).get("Statement"))


def grants(cfn: Json, role: str) -> Iterator[tuple[str, Any, Json]]:
    """(action, resource, statement) for every Allow statement of the role."""
    for st in statements(cfn, role):
        if st.get("Effect") != "Allow":
            continue
        for action in as_list(st.get("Action")):
            for resource in as_list(st.get("Resource")):
                yield action, resource, st


def s3_object_prefix(resource: Any, bucket: str = "DataBucket") -> str | None:
    """`incoming/labeled/*` for arn:...:s3:::${DataBucket}/incoming/labeled/*; None if not an object ARN."""
    text = sub_text(resource)
    marker = "${" + bucket + "}/"
    if marker not in text:
        return None
    return text.split(marker, 1)[1]


def event_source_mappings(cfn: Json) -> list[tuple[str | None, str | None]]:
    """(queue or stream logical id, function logical id) of every event source mapping."""
    return [
        (target(props(esm).get("EventSourceArn")), function_target(cfn, props(esm).get("FunctionName")))
        for esm in resources(cfn, "AWS::Lambda::EventSourceMapping").values()
    ]


def bucket_queue_notifications(template: Json, bucket: str = "DataBucket") -> list[tuple[str, str | None]]:
    """(key prefix, queue logical id) of the bucket's S3 -> SQS notifications."""
    config = props(template["Resources"][bucket]).get("NotificationConfiguration", {})
    out = []
    for qc in config.get("QueueConfigurations", []):
        prefix = ""
        for rule in qc.get("Filter", {}).get("S3Key", {}).get("Rules", []):
            if rule.get("Name") == "prefix":
                prefix = rule.get("Value", "")
        out.append((prefix, target(qc.get("Queue"))))
    return out


def dead_letter_queues(cfn: Json) -> set[str]:
    """Every queue used as a dead-letter queue: SQS redrive, Lambda async DLQ, EventBridge target DLQ,
    event source mapping on-failure destination."""
    dlqs: set[str] = set()
    for q in resources(cfn, "AWS::SQS::Queue").values():
        redrive = props(q).get("RedrivePolicy") or {}
        if target(redrive.get("deadLetterTargetArn")):
            dlqs.add(target(redrive["deadLetterTargetArn"]))
    for fn in lambda_functions(cfn).values():
        if target((props(fn).get("DeadLetterConfig") or {}).get("TargetArn")):
            dlqs.add(target(props(fn)["DeadLetterConfig"]["TargetArn"]))
    for rule in resources(cfn, "AWS::Events::Rule").values():
        for t in props(rule).get("Targets", []):
            if target((t.get("DeadLetterConfig") or {}).get("Arn")):
                dlqs.add(target(t["DeadLetterConfig"]["Arn"]))
    for esm in resources(cfn, "AWS::Lambda::EventSourceMapping").values():
        dest = ((props(esm).get("DestinationConfig") or {}).get("OnFailure") or {}).get("Destination")
        if target(dest):
            dlqs.add(target(dest))
    sqs = resources(cfn, "AWS::SQS::Queue")
    return {q for q in dlqs if q in sqs}
