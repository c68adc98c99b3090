"""From an AWS API call (a `RecordedCall`: service, operation, resource names) to the authorizations AWS
makes for it: IAM action(s), resource ARN(s) built from the request, and the request's condition keys.

The API operation is not always the IAM action: HeadObject is authorized as s3:GetObject, ListObjectsV2 as
s3:ListBucket on the bucket (with s3:prefix), CopyObject as s3:GetObject on the source *and* s3:PutObject
on the destination, DeleteMessageBatch as sqs:DeleteMessage. An operation missing from these tables raises
`UnmappedCall`: a new kind of call must be mapped here before it can pass.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import unquote, urlparse

from policy_eval import Request

from harness.faults.plan import RecordedCall

# Every request the functions make goes over HTTPS (botocore's default endpoints; moto's in-process URLs).
BASE_CONTEXT = {"aws:SecureTransport": "true"}


class UnmappedCall(LookupError):
    """An operation with no IAM mapping here: map it before a function may make it."""


# --------------------------------------------------------------------------------------------- S3
_S3_OBJECT = {
    "GetObject": "s3:GetObject",
    "HeadObject": "s3:GetObject",
    "PutObject": "s3:PutObject",
    "CreateMultipartUpload": "s3:PutObject",
    "UploadPart": "s3:PutObject",
    "CompleteMultipartUpload": "s3:PutObject",
    "AbortMultipartUpload": "s3:AbortMultipartUpload",
    "DeleteObject": "s3:DeleteObject",
    "GetObjectTagging": "s3:GetObjectTagging",
    "PutObjectTagging": "s3:PutObjectTagging",
}
# Reads and deletes of one version need the ...Version action instead.
_S3_VERSIONED = {"s3:GetObject": "s3:GetObjectVersion", "s3:DeleteObject": "s3:DeleteObjectVersion"}
_S3_BUCKET = {
    "ListObjects": "s3:ListBucket",
    "ListObjectsV2": "s3:ListBucket",
    "HeadBucket": "s3:ListBucket",
    "ListObjectVersions": "s3:ListBucketVersions",
    "GetBucketLocation": "s3:GetBucketLocation",
}


def s3_object_arn(bucket: str, key: str) -> str:
    return f"arn:aws:s3:::{bucket}/{key}"


def _s3(operation: str, p: Mapping[str, str]) -> list[Request]:
    bucket = p["Bucket"]
    if operation in _S3_OBJECT:
        action = _S3_OBJECT[operation]
        if p.get("VersionId"):
            action = _S3_VERSIONED.get(action, action)
        return [Request(action, s3_object_arn(bucket, p["Key"]), BASE_CONTEXT)]
    if operation == "CopyObject":
        source, _, query = p["CopySource"].lstrip("/").partition("?versionId=")
        source_bucket, _, source_key = unquote(source).partition("/")
        read = "s3:GetObjectVersion" if query else "s3:GetObject"
        return [
            Request(read, s3_object_arn(source_bucket, source_key), BASE_CONTEXT),
            Request("s3:PutObject", s3_object_arn(bucket, p["Key"]), BASE_CONTEXT),
        ]
    if operation in _S3_BUCKET:
        context = dict(BASE_CONTEXT)
        if operation in ("ListObjects", "ListObjectsV2", "ListObjectVersions"):
            context["s3:prefix"] = p.get("Prefix", "")
        return [Request(_S3_BUCKET[operation], f"arn:aws:s3:::{bucket}", context)]
    raise UnmappedCall(f"s3:{operation}")


def missing_key_read(call: RecordedCall) -> Request:
    """What S3 checks before it answers 404 (not 403) to a read of a missing key: s3:ListBucket on the
    bucket. The request carries no s3:prefix; it is set to the key, the reading that the template's
    prefix-scoped ListBucket statements rely on (docs/CONTRACTS.md, least privilege: an assumption that
    only a real account can confirm)."""
    p = call.params_summary
    context = {**BASE_CONTEXT, "s3:prefix": p["Key"]}
    return Request("s3:ListBucket", f"arn:aws:s3:::{p['Bucket']}", context)


# ------------------------------------------------------------------------------------- DynamoDB
_DYNAMODB = frozenset(
    {"GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query", "Scan", "DescribeTable", "ConditionCheckItem"}
)


def _dynamodb(operation: str, p: Mapping[str, str], region: str, account: str) -> list[Request]:
    if operation not in _DYNAMODB:
        raise UnmappedCall(f"dynamodb:{operation}")
    arn = f"arn:aws:dynamodb:{region}:{account}:table/{p['TableName']}"
    if p.get("IndexName") and operation in ("Query", "Scan"):
        arn += f"/index/{p['IndexName']}"
    return [Request(f"dynamodb:{operation}", arn, BASE_CONTEXT)]


# ------------------------------------------------------------------------------------------ SQS
# Batch operations are authorized as their single-message action.
_SQS = {
    "ReceiveMessage": "sqs:ReceiveMessage",
    "DeleteMessage": "sqs:DeleteMessage",
    "DeleteMessageBatch": "sqs:DeleteMessage",
    "ChangeMessageVisibility": "sqs:ChangeMessageVisibility",
    "ChangeMessageVisibilityBatch": "sqs:ChangeMessageVisibility",
    "SendMessage": "sqs:SendMessage",
    "SendMessageBatch": "sqs:SendMessage",
    "GetQueueAttributes": "sqs:GetQueueAttributes",
    "GetQueueUrl": "sqs:GetQueueUrl",
    "PurgeQueue": "sqs:PurgeQueue",
}


def queue_arn(queue_url: str, region: str, account: str) -> str:
    """``https://sqs.<region>.amazonaws.com/<account>/<name>`` -> ``arn:aws:sqs:<region>:<account>:<name>``"""
    path = urlparse(queue_url).path.strip("/").split("/")
    owner, name = (path[-2], path[-1]) if len(path) >= 2 else (account, path[-1])
    return f"arn:aws:sqs:{region}:{owner}:{name}"


def _sqs(operation: str, p: Mapping[str, str], region: str, account: str) -> list[Request]:
    if operation not in _SQS:
        raise UnmappedCall(f"sqs:{operation}")
    arn = (
        queue_arn(p["QueueUrl"], region, account)
        if "QueueUrl" in p
        else f"arn:aws:sqs:{region}:{account}:{p['QueueName']}"
    )
    return [Request(_SQS[operation], arn, BASE_CONTEXT)]


# ------------------------------------------------------------------------------ Step Functions
def _states(operation: str, p: Mapping[str, str]) -> list[Request]:
    if operation in ("StartExecution", "StartSyncExecution", "ListExecutions", "DescribeStateMachine"):
        return [Request(f"states:{operation}", p["stateMachineArn"], BASE_CONTEXT)]
    if operation in ("DescribeExecution", "StopExecution", "GetExecutionHistory"):
        return [Request(f"states:{operation}", p["executionArn"], BASE_CONTEXT)]
    raise UnmappedCall(f"states:{operation}")


# ------------------------------------------------------------------------- SNS, KMS, SageMaker
def _other(call: RecordedCall, region: str, account: str) -> list[Request]:
    p = call.params_summary
    if call.service == "sns" and call.operation == "Publish":
        return [Request("sns:Publish", p["TopicArn"], BASE_CONTEXT)]
    if call.service == "kms" and call.operation in ("Decrypt", "GenerateDataKey", "Encrypt", "DescribeKey"):
        key = p.get("KeyId", "*")
        arn = key if key.startswith("arn:") else f"arn:aws:kms:{region}:{account}:key/{key}"
        return [Request(f"kms:{call.operation}", arn, BASE_CONTEXT)]
    if call.service == "sagemaker" and call.operation in (
        "CreateTrainingJob",
        "DescribeTrainingJob",
        "StopTrainingJob",
    ):
        name = p["TrainingJobName"].lower()
        arn = f"arn:aws:sagemaker:{region}:{account}:training-job/{name}"
        return [Request(f"sagemaker:{call.operation}", arn, BASE_CONTEXT)]
    if call.service == "sts" and call.operation == "GetCallerIdentity":
        return []  # always allowed, whatever the policies say
    raise UnmappedCall(f"{call.service}:{call.operation}")


def requests_for(call: RecordedCall, region: str, account: str) -> list[Request]:
    """The authorizations AWS makes for ``call`` (empty for calls that need none)."""
    if call.service == "s3":
        return _s3(call.operation, call.params_summary)
    if call.service == "dynamodb":
        return _dynamodb(call.operation, call.params_summary, region, account)
    if call.service == "sqs":
        return _sqs(call.operation, call.params_summary, region, account)
    if call.service == "stepfunctions":
        return _states(call.operation, call.params_summary)
    return _other(call, region, account)
