"""Test-side helpers on a ``LocalAws`` (the template's resources in moto, the real handlers): uploads,
commits, the audit of the guarantees, and waiting for executions."""

from __future__ import annotations

import json
from typing import Any

import boto3

from harness.faults.audit import Audit, PipelineAuditor
from medimage.core import layout
from medimage.core.presets import get_preset
from medimage.local.delivery import EventSource
from medimage.local.environment import LocalAws
from medimage.local.synthetic import bad_files, generate
from medimage.ops.executions import wait_for_execution

DS = "chestxray2017-binary"


def images(n: int, seed: int = 1, prefix: str = "") -> list[tuple[str, bytes]]:
    """(key, bytes) of ``n`` synthetic labeled uploads of both classes (``prefix`` before each name)."""
    files = generate(get_preset(DS), per_class=(n + 1) // 2, size=40, seed=seed)
    files = [f for pair in zip(files[: len(files) // 2], files[len(files) // 2 :], strict=True) for f in pair]
    return [(f"{layout.LABELED_PREFIX}{DS}/{f.folder}/{prefix}{f.filename}", f.data) for f in files[:n]]


def bad(n: int | None = None) -> list[tuple[str, bytes]]:
    items = list(bad_files(40).items())[:n]
    return [(f"{layout.LABELED_PREFIX}{DS}/NORMAL/{name}", data) for name, data in items]


def put(env: LocalAws, uploads: list[tuple[str, bytes]]) -> None:
    s3 = boto3.client("s3")
    for key, data in uploads:
        s3.put_object(Bucket=env.bucket, Key=key, Body=data)


def source_of(env: LocalAws, function: str) -> EventSource:
    return next(s for s in env.sources if s.function == function)


def auditor(env: LocalAws) -> PipelineAuditor:
    return PipelineAuditor(
        boto3.client("s3"),
        boto3.client("dynamodb"),
        env.bucket,
        env.table,
        boto3.client("stepfunctions"),
        env.state_machine_arn,
    )


def audit(env: LocalAws, keys: set[str] | list[str]) -> Audit:
    """The audit, asserting every guarantee holds."""
    result = auditor(env).audit(DS, set(keys))
    assert result.problems() == [], result.problems()
    return result


def commit_event(env: LocalAws) -> dict[str, Any]:
    """Upload ``_commit`` and take its EventBridge event off the split function's queue (undelivered);
    the annotate queue is drained."""
    boto3.client("s3").put_object(Bucket=env.bucket, Key=layout.commit_key(DS), Body=b"")
    sqs, url = boto3.client("sqs"), source_of(env, "SplitFunction").queue_url
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
    assert len(messages) == 1, messages
    sqs.delete_message(QueueUrl=url, ReceiptHandle=messages[0]["ReceiptHandle"])
    env.pump()  # annotate sees the marker too (and ignores it): a commit waits for that
    return json.loads(messages[0]["Body"])


def executions(env: LocalAws) -> list[dict[str, Any]]:
    sfn = boto3.client("stepfunctions")
    return sfn.list_executions(stateMachineArn=env.state_machine_arn)["executions"]


def wait_for_all(env: LocalAws, timeout_s: float = 300) -> list[dict[str, Any]]:
    """Every execution of the state machine, each waited for to its end (described)."""
    sfn = boto3.client("stepfunctions")
    return [
        wait_for_execution(sfn, e["executionArn"], timeout_s=timeout_s, poll_s=0.2) for e in executions(env)
    ]
