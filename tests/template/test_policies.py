"""Least privilege in the translated template: each function's S3 object grants stay inside the prefixes the
design gives it, each function has what its job needs, and no IAM policy grants `*` (actions or resources)
where a narrower scope exists.

To add a function: give it an entry in S3_PREFIXES (and NEEDS), next to the design's S3 layout table."""

from __future__ import annotations

import fnmatch
import json

import pytest
from template_model import (
    as_list,
    grants,
    lambda_functions,
    props,
    resources,
    role_of,
    s3_object_prefix,
    sub_text,
    target,
)

pytestmark = pytest.mark.xdist_group("template")

# Key prefixes of the data bucket each function may touch at object level (docs/ARCHITECTURE.md, S3 layout).
S3_PREFIXES = {
    "AnnotateFunction": ("incoming/labeled/", "quarantine/"),
    "SplitFunction": ("manifests/", "incoming/labeled/"),
    "GateFunction": ("training/", "manifests/", "incoming/labeled/", "models/"),
    "PromoteFunction": ("training/", "models/"),
    "PackFunction": ("manifests/", "incoming/labeled/"),
    "InferenceFunction": (
        "incoming/unlabeled/",
        "quarantine/",
        "predictions/",
        "models/",
        "review/",
        "pacs/failed/",
        "trials/",
        "incoming/labeled/",  # the review worklist files a reviewed image as training data
    ),
    "RollbackFunction": ("models/",),
    # The source buckets' objects are granted on BulkImportSourceBuckets alone (test_bulk_import_iam.py).
    "BulkCopyFunction": ("incoming/labeled/", "quarantine/", "imports/"),
}

# (action, S3 key that must be allowed | resource logical id) each function needs for its job.
NEEDS = {
    "AnnotateFunction": [
        ("s3:GetObject", "incoming/labeled/chestxray2017/NORMAL/x.jpeg"),
        ("s3:PutObject", "quarantine/chestxray2017/x.jpeg"),
        ("s3:DeleteObject", "incoming/labeled/chestxray2017/NORMAL/x.jpeg"),
        ("dynamodb:PutItem", "CatalogTable"),
        ("kms:Decrypt", "PipelineKey"),
    ],
    "SplitFunction": [
        ("s3:PutObject", "manifests/chestxray2017/v1/train.csv"),
        ("dynamodb:Query", "CatalogTable"),
        ("states:StartExecution", "TrainingStateMachine"),
    ],
    "GateFunction": [
        ("s3:GetObject", "training/chestxray2017/job/output/model.tar.gz"),
        ("s3:GetObject", "models/chestxray2017/production.json"),
    ],
    "PromoteFunction": [
        ("s3:PutObject", "models/chestxray2017/production.json"),
        ("s3:GetObject", "training/chestxray2017/job/output/model.tar.gz"),
    ],
    "PackFunction": [
        ("s3:GetObject", "manifests/chestxray2017/v1/train.csv"),
        ("s3:GetObject", "incoming/labeled/chestxray2017/NORMAL/x.jpeg"),
        ("s3:PutObject", "manifests/chestxray2017/v1/shards/train/train-00000.tfrecord"),
        ("s3:AbortMultipartUpload", "manifests/chestxray2017/v1/shards/train/train-00000.tfrecord"),
    ],
    "InferenceFunction": [
        ("s3:GetObject", "incoming/unlabeled/chestxray2017/y.jpeg"),
        ("s3:PutObject", "predictions/chestxray2017/y.jpeg.json"),
        ("s3:PutObject", "review/chestxray2017/y.jpeg"),
        ("s3:PutObject", "incoming/unlabeled/chestxray2017/stow/z.dcm"),
        ("s3:PutObject", "pacs/failed/chestxray2017/stow/z.dcm.sr.dcm.json"),
        ("s3:PutObject", "trials/chestxray2017/v2/pairs/20261201T000000Z-0a1b2c3d.jsonl"),
        ("s3:GetObject", "models/chestxray2017/production.json"),
        ("s3:GetObject", "review/chestxray2017/y.jpeg"),
        ("s3:DeleteObject", "review/chestxray2017/y.jpeg.json"),
        ("s3:PutObject", "incoming/labeled/chestxray2017/PNEUMONIA/y_virus.jpeg"),
    ],
    "RollbackFunction": [
        ("s3:PutObject", "models/chestxray2017/production.json"),
        ("s3:GetObject", "models/chestxray2017/20261201T000000Z-0a1b2c3d/model.tflite"),
    ],
    "BulkCopyFunction": [
        ("s3:PutObject", "incoming/labeled/chestxray2017/NORMAL/x.jpeg"),
        ("s3:PutObject", "incoming/labeled/chestxray2017/_commit"),
        ("s3:GetObject", "quarantine/chestxray2017/incoming/labeled/chestxray2017/NORMAL/x.jpeg"),
        ("s3:PutObject", "imports/chestxray2017/run-1/batches/0a1b.json"),
    ],
}

# Actions that have no resource-level permissions: `Resource: "*"` is the narrowest scope they take.
NO_RESOURCE_SCOPE = {
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    "xray:GetSamplingRules",
    "xray:GetSamplingTargets",
    "cloudwatch:PutMetricData",
    "ecr:GetAuthorizationToken",
    "logs:CreateLogDelivery",
    "logs:GetLogDelivery",
    "logs:UpdateLogDelivery",
    "logs:DeleteLogDelivery",
    "logs:ListLogDeliveries",
    "logs:PutResourcePolicy",
    "logs:DescribeResourcePolicies",
    "logs:DescribeLogGroups",
}

# AWS managed policies allowed: those SAM attaches by itself (logs, tracing), and API Gateway's account-wide
# role for writing access logs (it takes no narrower policy). Not AWSLambdaSQSQueueExecutionRole, which SAM
# attaches to `Type: SQS` events: it may poll every queue of the account, so the queues are wired with
# explicit event source mappings and statements scoped to the one queue each function consumes.
MANAGED_POLICIES = {
    "service-role/AWSLambdaBasicExecutionRole",
    "AWSXrayWriteOnlyAccess",
    "service-role/AmazonAPIGatewayPushToCloudWatchLogs",
}


def functions_with_roles(cfn):
    return {fn: role_of(cfn, fn) for fn in lambda_functions(cfn)}


def test_every_function_has_a_declared_s3_scope(cfn):
    unknown = sorted(set(lambda_functions(cfn)) - set(S3_PREFIXES))
    assert not unknown, f"add {unknown} to S3_PREFIXES and NEEDS in {__file__}"


@pytest.mark.parametrize("function", sorted(S3_PREFIXES))
def test_s3_object_grants_stay_in_the_functions_prefixes(cfn, function):
    assert function in cfn["Resources"], f"{function} is in the template"
    allowed = S3_PREFIXES[function]
    for action, resource, _ in grants(cfn, role_of(cfn, function)):
        prefix = s3_object_prefix(resource)
        if prefix is None or not action.startswith("s3:"):
            continue
        assert prefix.startswith(allowed), f"{function}: {action} on {prefix!r} is outside {allowed}"
        assert prefix not in ("*", ""), f"{function}: {action} on the whole bucket"


@pytest.mark.parametrize("function", sorted(NEEDS))
def test_functions_have_what_their_job_needs(cfn, function):
    assert function in cfn["Resources"], f"{function} is in the template"
    given = list(grants(cfn, role_of(cfn, function)))
    for action, what in NEEDS[function]:
        if "/" in what:
            ok = any(
                a == action and (p := s3_object_prefix(r)) is not None and fnmatch.fnmatchcase(what, p)
                for a, r, _ in given
            )
        else:
            ok = any(a == action and what in json.dumps(r) for a, r, _ in given)
        assert ok, f"{function} lacks {action} on {what}"


# The training jobs' role, S3 object level: (action, key prefix) it holds; the source tarball is a parameter.
TRAINING_ROLE_GRANTS = {
    ("s3:GetObject", "manifests/*"),
    ("s3:GetObject", "incoming/labeled/*"),
    ("s3:GetObject", "${TrainingSourceKey}"),
    ("s3:GetObject", "pretrained/*"),
    ("s3:GetObject", "training/*"),
    ("s3:PutObject", "training/*"),
    ("s3:AbortMultipartUpload", "training/*"),
}


def test_training_jobs_read_the_pretrained_weights_and_nothing_more_of_the_bucket(cfn):
    given = list(grants(cfn, "SageMakerTrainingRole"))
    objects = {(a, p) for a, r, _ in given if a.startswith("s3:") and (p := s3_object_prefix(r)) is not None}
    assert objects == TRAINING_ROLE_GRANTS
    weights = "pretrained/mobilenet_v2/tf2_mobilenet_v2_1.0_224_ptq.tflite"
    assert [a for a, p in objects if fnmatch.fnmatchcase(weights, p)] == ["s3:GetObject"]  # read only
    # An S3Prefix channel is listed before it is read: ListBucket on the bucket, for that prefix only.
    (listing,) = [st for a, _, st in given if a == "s3:ListBucket"]
    patterns = as_list(listing["Condition"]["StringLike"]["s3:prefix"])
    assert any(fnmatch.fnmatchcase("pretrained/mobilenet_v2/", p) for p in patterns)
    assert not any(fnmatch.fnmatchcase("models/chestxray2017/", p) for p in patterns)


def test_pack_writes_shards_only_and_reads_no_model_or_upload_outside_the_labeled_images(cfn):
    given = list(grants(cfn, role_of(cfn, "PackFunction")))
    writes = {p for a, r, _ in given if a == "s3:PutObject" and (p := s3_object_prefix(r)) is not None}
    assert writes == {"manifests/*/shards/*"}
    for key in ("manifests/chestxray2017/v1/train.csv", "manifests/chestxray2017/v1/shards.json"):
        assert not any(fnmatch.fnmatchcase(key, p) for p in writes), key
    reads = {p for a, r, _ in given if a == "s3:GetObject" and (p := s3_object_prefix(r)) is not None}
    assert not any(fnmatch.fnmatchcase("models/chestxray2017/production.json", p) for p in reads)


def test_the_workflow_reads_shard_plans_and_runs_its_own_map_children_only(cfn):
    machine = props(cfn["Resources"]["TrainingStateMachine"])
    role = target(machine["RoleArn"])
    given = list(grants(cfn, role))
    reads = {p for a, r, _ in given if a == "s3:GetObject" and (p := s3_object_prefix(r)) is not None}
    assert reads == {"manifests/*/shards.json"}
    started = [sub_text(r) for a, r, _ in given if a == "states:StartExecution"]
    assert started == [
        "arn:${AWS::Partition}:states:${AWS::Region}:${AWS::AccountId}:stateMachine:${AWS::StackName}-training"
    ]
    assert sub_text(machine["StateMachineName"]) == "${AWS::StackName}-training"
    followed = {sub_text(r) for a, r, _ in given if a in ("states:DescribeExecution", "states:StopExecution")}
    assert followed == {
        "arn:${AWS::Partition}:states:${AWS::Region}:${AWS::AccountId}:execution:${AWS::StackName}-training/*"
    }


def test_no_wildcard_actions(cfn):
    for role in resources(cfn, "AWS::IAM::Role"):
        for action, _, st in grants(cfn, role):
            assert "*" not in action, f"{role} {st.get('Sid')}: action {action!r}; name the actions"


def test_no_wildcard_resources_where_a_narrower_scope_exists(cfn):
    for role in resources(cfn, "AWS::IAM::Role"):
        for action, resource, st in grants(cfn, role):
            if resource == "*":
                assert action in NO_RESOURCE_SCOPE, (
                    f"{role} {st.get('Sid')}: {action} on '*' (scope it to the resources it needs)"
                )


def test_only_the_managed_policies_sam_attaches(cfn):
    for name, role in resources(cfn, "AWS::IAM::Role").items():
        for arn in as_list(props(role).get("ManagedPolicyArns")):
            text = sub_text(arn) or json.dumps(arn)
            assert any(text.endswith(f":policy/{p}") for p in MANAGED_POLICIES), f"{name}: {text}"


def test_roles_are_assumed_only_by_their_service(cfn):
    for name, role in resources(cfn, "AWS::IAM::Role").items():
        for st in props(role)["AssumeRolePolicyDocument"]["Statement"]:
            principal = st.get("Principal", {})
            assert principal != "*" and "AWS" not in principal, f"{name} trusts {principal}"
            assert set(as_list(principal.get("Service"))) <= {
                "lambda.amazonaws.com",
                "states.amazonaws.com",
                "sagemaker.amazonaws.com",
                "apigateway.amazonaws.com",
                "codedeploy.amazonaws.com",
            }, name


def test_functions_read_the_table_they_are_given(cfn):
    for function, role in functions_with_roles(cfn).items():
        for action, resource, _ in grants(cfn, role):
            if action.startswith("dynamodb:"):
                assert "CatalogTable" in json.dumps(resource), f"{function}: {action} on {resource}"
            if action.startswith("kms:"):
                assert target(resource) in resources(cfn, "AWS::KMS::Key"), (
                    f"{function}: {action} on {resource}"
                )
