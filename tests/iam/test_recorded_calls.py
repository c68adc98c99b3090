"""The calls the fault injector records (RecordedCall, per function) are checked against each function's
policy with the same evaluator, and the translated template's statements resolve for a local stack."""

from __future__ import annotations

import json
import os
from pathlib import Path

import boto3
import pytest
from calls import requests_for
from function_policies import SAM_PYTHON, FunctionPolicies, translate
from policy_eval import evaluate

from harness.faults.injector import FaultInjector
from medimage.core.presets import get_preset
from medimage.local.account import ACCOUNT, REGION
from medimage.local.synthetic import bad_files, generate

pytestmark = pytest.mark.xdist_group("iam")

FUNCTIONS = {
    "AnnotateFunction",
    "SplitFunction",
    "GateFunction",
    "PromoteFunction",
    "InferenceFunction",
    "RollbackFunction",
    "PackFunction",
    "BulkCopyFunction",
}


@pytest.fixture(scope="module")
def policies() -> FunctionPolicies:
    if not SAM_PYTHON.exists():
        message = f"{SAM_PYTHON} is missing: run `make sam-install` (make test does)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return FunctionPolicies(translate())


def test_every_function_has_a_role_and_a_handler_file(policies):
    assert set(policies.functions) == FUNCTIONS
    assert set(policies.handler_files.values()) == FUNCTIONS
    for path in policies.handler_files:
        assert Path(path).is_file(), path


def test_statements_resolve_for_any_stack_and_keep_their_names(policies):
    binding = policies.default_binding()
    for function in FUNCTIONS:
        statements = policies.statements(function, binding)
        assert statements, function
        for st in statements:
            text = json.dumps([st.actions, st.resources, st.conditions])
            assert "${" not in text and "Fn::" not in text, (function, st.label, text)
    labels = {st.label for st in policies.statements("AnnotateFunction", binding)}
    assert {"ReadIncomingLabeled", "WriteQuarantine", "RecordImagesConditionally"} <= labels


def test_the_stack_binding_names_the_data_bucket_table_queue_and_state_machine(policies):
    machine = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:local-training"
    queue = f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/local-annotate"
    env = {"CATALOG_TABLE": "catalog", "STATE_MACHINE_ARN": machine, "ANNOTATE_QUEUE_URL": queue}
    binding = policies.binding_for("SplitFunction", env, ["the-bucket"])
    assert binding.refs["DataBucket"] == "the-bucket"
    assert binding.attrs[("CatalogTable", "Arn")] == f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/catalog"
    assert binding.refs["TrainingStateMachine"] == machine
    assert binding.attrs[("AnnotateQueue", "Arn")] == f"arn:aws:sqs:{REGION}:{ACCOUNT}:local-annotate"
    # The inference function's DATA_BUCKET names its bucket; another function's stray DATA_BUCKET does not.
    served = {"DATA_BUCKET": "served"}
    assert policies.binding_for("InferenceFunction", served, ["a", "b"]).refs["DataBucket"] == "served"
    assert policies.binding_for("GateFunction", served, ["the-bucket"]).refs["DataBucket"] == "the-bucket"
    # Two buckets and nothing naming one: no data bucket is assumed.
    assert policies.binding_for("GateFunction", {}, ["a", "b"]).refs["DataBucket"] == "databucket"
    # A template parameter the environment names (!Ref) takes the value the stack gave it.
    bulk = policies.binding_for("BulkCopyFunction", {"BULK_IMPORT_SOURCE_BUCKETS": "src-a,src-b"}, ["x"])
    assert bulk.parameters == {"BulkImportSourceBuckets": "src-a,src-b"}


def test_aws_polls_and_dead_letters_with_the_functions_role(policies):
    binding = policies.default_binding()
    annotate = {
        (c.request.action, c.request.resource) for c in policies.implied_calls("AnnotateFunction", binding)
    }
    queue = binding.attrs[("AnnotateQueue", "Arn")]
    assert {
        ("sqs:ReceiveMessage", queue),
        ("sqs:DeleteMessage", queue),
        ("sqs:GetQueueAttributes", queue),
    } <= annotate
    assert ("kms:Decrypt", binding.attrs[("PipelineKey", "Arn")]) in annotate
    split = {(c.request.action, c.request.resource) for c in policies.implied_calls("SplitFunction", binding)}
    assert ("sqs:SendMessage", binding.attrs[("SplitDeadLetterQueue", "Arn")]) in split
    for function in FUNCTIONS:
        statements = policies.statements(function, binding)
        for implied in policies.implied_calls(function, binding):
            assert evaluate(statements, implied.request).allowed, (function, implied.why, implied.request)


def test_the_fault_injectors_record_of_annotate_is_within_its_policy(local_aws, policies):
    files = generate(get_preset("chestxray2017"), per_class=2, size=32)
    s3 = boto3.client("s3", region_name=REGION)
    with FaultInjector() as injector:
        injector.wrap_local_aws(local_aws)
        for f in files:
            s3.put_object(
                Bucket=local_aws.bucket,
                Key=f"incoming/labeled/chestxray2017/{f.folder}/{f.filename}",
                Body=f.data,
            )
        key = "incoming/labeled/chestxray2017/NORMAL/truncated.jpeg"
        s3.put_object(Bucket=local_aws.bucket, Key=key, Body=bad_files()["truncated.jpeg"])
        local_aws.pump()
    calls = [c for c in injector.calls if c.function == "AnnotateFunction"]
    operations = {c.operation for c in calls}
    assert {"GetObject", "PutItem", "CopyObject", "PutObject", "DeleteObject"} <= operations, operations
    environment = local_aws.functions["AnnotateFunction"].environment
    binding = policies.binding_for("AnnotateFunction", environment, [local_aws.bucket])
    full = policies.statements("AnnotateFunction", binding)
    without_quarantine = policies.statements("AnnotateFunction", binding, frozenset({"WriteQuarantine"}))
    requests = [r for c in calls for r in requests_for(c, REGION, ACCOUNT)]
    assert all(evaluate(full, r).allowed for r in requests), [
        r.describe() for r in requests if not evaluate(full, r).allowed
    ]
    refused = {r.describe() for r in requests if not evaluate(without_quarantine, r).allowed}
    assert refused and all("quarantine/" in text and "s3:PutObject" in text for text in refused), refused
