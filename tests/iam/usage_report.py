"""Which of each function's grants its calls needed: the least-privilege report (build/iam-usage.json).

A grant is one (statement, action, resource) of the function's role. It is used when a recorded call
(enforce.py's record) or a call AWS makes with the role (function_policies.implied_calls) fell under it.
An unused grant of a write action fails the report unless ALLOWED_UNUSED gives the reason it stays."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping
from typing import Any

from function_policies import FunctionPolicies
from iam_catalog import access_level, is_write
from policy_eval import evaluate

# (function, statement label, action) -> why the grant stays although no recorded call uses it. Only for
# calls that happen on AWS and not in the local emulation (moto) or the tests.
_SNS_SSE = (
    "SNS encrypts a message to a KMS-encrypted topic with the publisher's own kms:GenerateDataKey and "
    "kms:Decrypt; moto's SNS calls no KMS"
)
ALLOWED_UNUSED: dict[tuple[str, str, str], str] = {
    ("PromoteFunction", "EncryptSignOffRequests", "kms:GenerateDataKey"): _SNS_SSE,
    ("PromoteFunction", "EncryptSignOffRequests", "kms:Decrypt"): _SNS_SSE,
}


def symbolic(resource: Any) -> str:
    """A resource of the translated template as text: ``arn:${AWS::Partition}:s3:::${DataBucket}/x/*``."""
    if isinstance(resource, str):
        return resource
    if isinstance(resource, dict) and "Fn::Sub" in resource:
        sub = resource["Fn::Sub"]
        if isinstance(sub, str):
            return sub
        text, names = sub
        for name, value in names.items():
            text = text.replace("${" + name + "}", symbolic(value))
        return text
    if isinstance(resource, dict) and "Ref" in resource:
        return "${" + resource["Ref"] + "}"
    if isinstance(resource, dict) and "Fn::GetAtt" in resource:
        att = resource["Fn::GetAtt"]
        return "${" + (".".join(att) if isinstance(att, list) else str(att)) + "}"
    return str(resource)


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def build(policies: FunctionPolicies, record: Mapping[str, Any], functions: list[str]) -> dict[str, Any]:
    """The report: per function, every grant with the calls that used it, and the unused ones."""
    used: dict[tuple[str, str, str, int], Counter[str]] = defaultdict(Counter)
    prefixes: dict[tuple[str, str], set[str]] = defaultdict(set)
    for row in record["evaluations"]:
        if row["decision"] != "allow":
            continue
        how = row["operation"] if row["kind"] == "call" else f"{row['operation']} ({row['kind']})"
        for label, action, index in row["grants"]:
            used[(row["function"], label, action, index)][how] += row["count"]
        if "s3:prefix" in row["context"]:
            for label in row["allowed_by"]:
                prefixes[(row["function"], label)].add(row["context"]["s3:prefix"])

    binding = policies.default_binding()
    report: dict[str, Any] = {"functions": {}, "failures": []}
    for function in functions:
        statements = policies.statements(function, binding)
        for implied in policies.implied_calls(function, binding):
            evaluation = evaluate(statements, implied.request)
            if not evaluation.allowed:
                report["failures"].append(f"{function}: {implied.why} needs {implied.request.describe()}")
                continue
            for st in statements:
                if st.label in evaluation.allowed_by:
                    for action, index in st.grants_used(implied.request):
                        used[(function, st.label, action, index)][f"on AWS: {implied.why}"] += 1
        grants, unused = [], []
        for raw in policies.raw_statements(function):
            actions = _as_list(raw.doc.get("Action", []))
            resources = _as_list(raw.doc.get("Resource", []))
            condition_prefixes = (raw.doc.get("Condition") or {}).get("StringLike", {}).get("s3:prefix")
            for action in actions:
                for index, resource in enumerate(resources):
                    calls = used.get((function, raw.label, action, index), Counter())
                    grant = {
                        "statement": raw.label,
                        "action": action,
                        "resource": symbolic(resource),
                        "access_level": access_level(action) or "not an IAM action",
                        "uses": sum(calls.values()),
                        "by": dict(sorted(calls.items())),
                    }
                    if condition_prefixes:
                        seen = prefixes.get((function, raw.label), set())
                        grant["s3:prefix"] = {
                            pattern: any(_prefix_match(pattern, p) for p in seen)
                            for pattern in _as_list(condition_prefixes)
                        }
                    grants.append(grant)
                    if calls:
                        continue
                    reason = ALLOWED_UNUSED.get((function, raw.label, action))
                    unused.append({**grant, "allowed_because": reason})
                    if is_write(action) and reason is None:
                        where = symbolic(resource)
                        report["failures"].append(
                            f"{function}: {raw.label} grants {action} on {where}; no call uses it"
                        )
        report["functions"][function] = {
            "managed_policies": policies.managed_policies(function),
            "grants": grants,
            "unused": unused,
        }
    report["denials"] = record["denials"]
    report["unattributed_calls"] = record.get("unattributed_calls", {})
    return report


def _prefix_match(pattern: str, prefix: str) -> bool:
    from policy_eval import wildcard_match

    return wildcard_match(pattern, prefix)
