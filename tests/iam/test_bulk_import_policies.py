"""The bulk import's IAM, resolved for a stack: the source buckets are reached only as
BulkImportSourceBuckets names them (none by default), only read, and the data bucket only under the
prefixes the import writes. Both roles: the bulk-copy function's and the state machine's."""

from __future__ import annotations

import pytest
from function_policies import FunctionPolicies, translate
from policy_eval import Request, Statement, evaluate

from medimage.local.account import ACCOUNT, REGION
from medimage.local.template import Resolver

DATA = "medimage-data"
TLS = {"aws:SecureTransport": "true"}


@pytest.fixture(scope="module")
def policies() -> FunctionPolicies:
    return FunctionPolicies(translate())


def function_statements(policies: FunctionPolicies, sources: str) -> list[Statement]:
    environ = {"DATA_BUCKET": DATA, "BULK_IMPORT_SOURCE_BUCKETS": sources}
    return policies.statements("BulkCopyFunction", policies.binding_for("BulkCopyFunction", environ))


def machine_statements(policies: FunctionPolicies, sources: str) -> list[Statement]:
    """The state machine role's statements (SAM: ``BulkImportStateMachineRole``), resolved."""
    binding = policies.default_binding()
    binding.refs["DataBucket"] = DATA
    resolver = Resolver(
        policies.raw, binding.refs, binding.attrs, {"BulkImportSourceBuckets": sources}, REGION, ACCOUNT
    )
    role = policies.cfn["Resources"]["BulkImportStateMachineRole"]
    out = []
    for policy in role["Properties"]["Policies"]:
        docs = policy["PolicyDocument"]["Statement"]
        for i, doc in enumerate(docs if isinstance(docs, list) else [docs]):
            resolved = resolver.resolve(doc)
            if isinstance(resolved, dict):  # a statement under a false !If is not granted
                out.append(
                    Statement.from_json(resolved, resolved.get("Sid") or f"{policy['PolicyName']}#{i}")
                )
    return out


def allowed(statements: list[Statement], action: str, resource: str, **context: str) -> bool:
    return evaluate(statements, Request(action, resource, {**TLS, **context})).allowed


def test_without_source_buckets_no_bucket_but_the_data_bucket_is_reachable(policies):
    for statements in (function_statements(policies, ""), machine_statements(policies, "")):
        assert not allowed(statements, "s3:GetObject", "arn:aws:s3:::site-archive/x/NORMAL/a.jpeg")
        assert not allowed(statements, "s3:ListBucket", "arn:aws:s3:::site-archive", **{"s3:prefix": "x/"})


def test_the_copy_function_reads_the_named_sources_only_and_never_writes_them(policies):
    statements = function_statements(policies, "site-archive,partner-scans")
    for bucket in ("site-archive", "partner-scans"):
        assert allowed(statements, "s3:GetObject", f"arn:aws:s3:::{bucket}/exports/NORMAL/a.jpeg")
        assert allowed(statements, "s3:ListBucket", f"arn:aws:s3:::{bucket}", **{"s3:prefix": "exports/"})
        for write in ("s3:PutObject", "s3:DeleteObject"):
            assert not allowed(statements, write, f"arn:aws:s3:::{bucket}/exports/NORMAL/a.jpeg")
    assert not allowed(statements, "s3:GetObject", "arn:aws:s3:::site-archive-2/exports/a.jpeg")
    # In the data bucket: the copies, the _commit, the records; nothing else.
    assert allowed(statements, "s3:PutObject", f"arn:aws:s3:::{DATA}/incoming/labeled/d/NORMAL/a.jpeg")
    assert allowed(statements, "s3:PutObject", f"arn:aws:s3:::{DATA}/imports/d/run/summary.json")
    assert not allowed(statements, "s3:PutObject", f"arn:aws:s3:::{DATA}/models/d/production.json")
    assert not allowed(statements, "s3:DeleteObject", f"arn:aws:s3:::{DATA}/incoming/labeled/d/NORMAL/a.jpeg")


def test_the_state_machine_lists_the_sources_and_writes_only_its_map_results(policies):
    statements = machine_statements(policies, "site-archive")
    assert allowed(statements, "s3:ListBucket", "arn:aws:s3:::site-archive", **{"s3:prefix": "exports/"})
    assert allowed(statements, "s3:GetObject", "arn:aws:s3:::site-archive/inventory/manifest.json")
    assert not allowed(statements, "s3:PutObject", "arn:aws:s3:::site-archive/exports/a.jpeg")
    assert not allowed(statements, "s3:ListBucket", "arn:aws:s3:::other-archive", **{"s3:prefix": ""})
    assert allowed(statements, "s3:PutObject", f"arn:aws:s3:::{DATA}/imports/map-runs/uuid/manifest.json")
    assert not allowed(statements, "s3:PutObject", f"arn:aws:s3:::{DATA}/incoming/labeled/d/NORMAL/a.jpeg")
    machine = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:medimage-local-bulk-import"
    assert allowed(statements, "states:StartExecution", machine)
    assert not allowed(statements, "states:StartExecution", machine.replace("bulk-import", "other"))
    function = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:BulkCopyFunction"
    assert allowed(statements, "lambda:InvokeFunction", function)
    assert allowed(statements, "lambda:InvokeFunction", function + ":live")
    assert not allowed(statements, "lambda:InvokeFunction", function.replace("BulkCopy", "Gate"))
