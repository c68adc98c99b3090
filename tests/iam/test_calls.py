"""API calls -> the authorizations AWS makes for them, and the functions' statements from the translated
template resolved for a local stack."""

from __future__ import annotations

import pytest
from calls import UnmappedCall, missing_key_read, queue_arn, requests_for
from policy_eval import Request

from harness.faults.plan import RecordedCall, summarize

R, A = "us-east-1", "123456789012"


def call(service: str, operation: str, **params: object) -> RecordedCall:
    return RecordedCall(service, operation, summarize(params), "AnnotateFunction")


def pairs(requests: list[Request]) -> list[tuple[str, str]]:
    return [(r.action, r.resource) for r in requests]


def test_object_reads_and_heads_are_get_object_on_the_key():
    for operation in ("GetObject", "HeadObject"):
        got = requests_for(call("s3", operation, Bucket="b", Key="incoming/labeled/d/x.jpeg"), R, A)
        assert pairs(got) == [("s3:GetObject", "arn:aws:s3:::b/incoming/labeled/d/x.jpeg")]


def test_a_version_read_needs_get_object_version():
    got = requests_for(call("s3", "GetObject", Bucket="b", Key="k", VersionId="v1"), R, A)
    assert pairs(got) == [("s3:GetObjectVersion", "arn:aws:s3:::b/k")]


def test_copy_needs_a_read_of_the_source_and_a_write_of_the_destination():
    source = {"Bucket": "b", "Key": "incoming/labeled/d/a b.jpeg"}
    got = requests_for(call("s3", "CopyObject", Bucket="b", Key="quarantine/d/x", CopySource=source), R, A)
    assert pairs(got) == [
        ("s3:GetObject", "arn:aws:s3:::b/incoming/labeled/d/a b.jpeg"),
        ("s3:PutObject", "arn:aws:s3:::b/quarantine/d/x"),
    ]
    versioned = {**source, "VersionId": "v9"}
    got = requests_for(call("s3", "CopyObject", Bucket="b", Key="q", CopySource=versioned), R, A)
    assert got[0].action == "s3:GetObjectVersion"
    # The string form of CopySource is URL-encoded.
    got = requests_for(
        call("s3", "CopyObject", Bucket="b", Key="q", CopySource="b/incoming/a%20b.jpeg"), R, A
    )
    assert got[0].resource == "arn:aws:s3:::b/incoming/a b.jpeg"


def test_listing_is_list_bucket_on_the_bucket_with_the_prefix():
    (got,) = requests_for(call("s3", "ListObjectsV2", Bucket="b", Prefix="manifests/d/"), R, A)
    assert (got.action, got.resource, got.context["s3:prefix"]) == (
        "s3:ListBucket",
        "arn:aws:s3:::b",
        "manifests/d/",
    )
    (whole,) = requests_for(call("s3", "ListObjectsV2", Bucket="b"), R, A)
    assert whole.context["s3:prefix"] == ""


def test_a_missing_key_answer_needs_list_bucket_with_the_key_as_prefix():
    got = missing_key_read(call("s3", "HeadObject", Bucket="b", Key="models/d/production.json"))
    assert (got.action, got.resource, got.context["s3:prefix"]) == (
        "s3:ListBucket",
        "arn:aws:s3:::b",
        "models/d/production.json",
    )


def test_dynamodb_queue_and_state_machine_arns_come_from_the_request():
    (item,) = requests_for(call("dynamodb", "PutItem", TableName="catalog"), R, A)
    assert pairs([item]) == [("dynamodb:PutItem", f"arn:aws:dynamodb:{R}:{A}:table/catalog")]
    (index,) = requests_for(call("dynamodb", "Query", TableName="catalog", IndexName="by-split"), R, A)
    assert index.resource.endswith("table/catalog/index/by-split")
    url = f"https://sqs.{R}.amazonaws.com/{A}/annotate-queue"
    (attrs,) = requests_for(call("sqs", "GetQueueAttributes", QueueUrl=url), R, A)
    assert pairs([attrs]) == [("sqs:GetQueueAttributes", f"arn:aws:sqs:{R}:{A}:annotate-queue")]
    (batch,) = requests_for(call("sqs", "DeleteMessageBatch", QueueUrl=url), R, A)
    assert batch.action == "sqs:DeleteMessage"
    machine = f"arn:aws:states:{R}:{A}:stateMachine:training"
    (start,) = requests_for(call("stepfunctions", "StartExecution", stateMachineArn=machine, name="x"), R, A)
    assert pairs([start]) == [("states:StartExecution", machine)]


def test_queue_arn_of_a_url():
    assert (
        queue_arn("https://sqs.eu-west-1.amazonaws.com/111122223333/q", R, A)
        == "arn:aws:sqs:us-east-1:111122223333:q"
    )
    assert queue_arn("http://localhost:5000/123456789012/q", R, A) == f"arn:aws:sqs:{R}:{A}:q"


def test_an_unmapped_operation_is_refused():
    with pytest.raises(UnmappedCall):
        requests_for(call("s3", "PutBucketPolicy", Bucket="b"), R, A)
    with pytest.raises(UnmappedCall):
        requests_for(call("dynamodb", "DeleteTable", TableName="t"), R, A)


def test_summaries_keep_resource_names_and_never_bodies():
    summary = summarize({"Bucket": "b", "Key": "k", "Body": b"pixels", "ContentType": "image/jpeg"})
    assert summary == {"Bucket": "b", "Key": "k"}
