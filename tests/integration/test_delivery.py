"""Event delivery as the deployed stack does it, in-process: the pollers of `medimage up` and `pump()` share
``LocalAws.deliver``; batches, partial batch failures, redelivery, dead-letter queues, async retries."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest

from medimage.adapters.catalog import DynamoCatalog
from medimage.core.presets import get_preset
from medimage.local.delivery import ASYNC_ATTEMPTS, EventSource, PumpReport
from medimage.local.environment import LocalAws
from medimage.local.synthetic import generate

DS = "chestxray2017"


@pytest.fixture
def env() -> Iterator[LocalAws]:
    from moto import mock_aws

    with mock_aws():
        yield LocalAws().create()


@pytest.fixture
def polled_env() -> Iterator[LocalAws]:
    """Failed messages visible again after 1 s (the template's minutes, shortened for the test)."""
    from moto import mock_aws

    with mock_aws():
        yield LocalAws(visibility_timeout_s=1, concurrent=True).create()


class Recording:
    """Wraps a function: records each event it receives; ``fail`` makes it raise."""

    def __init__(self, function: Any, fail: bool = False) -> None:
        self.function, self.fail, self.events = function, fail, []
        self.logical_id = getattr(function, "logical_id", "stub")

    def invoke(self, event: dict[str, Any]) -> Any:
        self.events.append(event)
        if self.fail:
            raise RuntimeError("handler exploded")
        return self.function.invoke(event) if self.function else None


def source(env: LocalAws, function: str) -> EventSource:
    return next(s for s in env.sources if s.function == function)


def count(env: LocalAws, queue: str) -> int:
    attributes = env.client("sqs").get_queue_attributes(
        QueueUrl=env.queue_urls()[queue], AttributeNames=["ApproximateNumberOfMessages"]
    )
    return int(attributes["Attributes"]["ApproximateNumberOfMessages"])


def upload_images(env: LocalAws, n: int, seed: int = 1) -> list[str]:
    keys = []
    for f in generate(get_preset(DS), per_class=n, size=48, seed=seed)[:n]:
        key = f"incoming/labeled/{DS}/{f.folder}/{f.filename}"
        boto3.client("s3").put_object(Bucket=env.bucket, Key=key, Body=f.data)
        keys.append(key)
    return keys


def wait_until(predicate: Callable[[], bool], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


@pytest.fixture
def pollers(polled_env: LocalAws) -> Iterator[Callable[[], PumpReport]]:
    stop = threading.Event()
    threads: list[threading.Thread] = []
    report = PumpReport()

    def start() -> PumpReport:
        for s in polled_env.sources:
            s.batching_window_s = 0.3  # the template's 5 s, shortened for the test
        threads.extend(polled_env.start_pollers(stop, report))
        return report

    yield start
    stop.set()
    for thread in threads:
        thread.join(timeout=10)


def test_a_poisoned_message_reaches_the_dlq_after_max_receive_count_while_its_batch_is_processed(
    polled_env, pollers
):
    # GIVEN three valid uploads and a message that is no S3 notification, queued before delivery starts
    env = polled_env
    keys = upload_images(env, 3)
    annotate = Recording(env.functions["AnnotateFunction"])
    env.functions["AnnotateFunction"] = annotate  # type: ignore[assignment]
    queue = env.queue_urls()["AnnotateQueue"]
    boto3.client("sqs").send_message(QueueUrl=queue, MessageBody="not an S3 event")
    # WHEN the pollers deliver (visibility timeout 0: a failed item is received again at once)
    pollers()
    wait_until(lambda: count(env, "AnnotateDeadLetterQueue") == 1)
    # THEN the first batch held all five (S3's TestEvent too), the three images are catalogued, the poison
    # was received maxReceiveCount (5) times and waits in the DLQ, and the annotate queue is empty
    first = annotate.events[0]["Records"]
    assert len(first) == 5
    records = DynamoCatalog(env.table).snapshot(DS).records
    assert sorted(r.key for r in records) == sorted(keys)
    poison_deliveries = [r for e in annotate.events for r in e["Records"] if r["body"] == "not an S3 event"]
    assert [r["attributes"]["ApproximateReceiveCount"] for r in poison_deliveries] == [
        "1",
        "2",
        "3",
        "4",
        "5",
    ]
    dead = boto3.client("sqs").receive_message(QueueUrl=env.queue_urls()["AnnotateDeadLetterQueue"])
    assert dead["Messages"][0]["Body"] == "not an S3 event"
    wait_until(lambda: count(env, "AnnotateQueue") == 0)


def test_the_same_object_uploaded_twice_is_catalogued_once(polled_env, pollers):
    # GIVEN delivery running, WHEN the same key is uploaded twice with the same bytes
    env = polled_env
    report = pollers()
    data = generate(get_preset(DS), per_class=1, size=48, seed=9)[0]
    key = f"incoming/labeled/{DS}/{data.folder}/{data.filename}"
    for _ in range(2):
        boto3.client("s3").put_object(Bucket=env.bucket, Key=key, Body=data.data)
    wait_until(lambda: report.messages >= 3 and count(env, "AnnotateQueue") == 0)  # TestEvent + 2 uploads
    # THEN both notifications were handled and the catalog holds one record for the key
    wait_until(lambda: len(DynamoCatalog(env.table).snapshot(DS).records) == 1)
    time.sleep(0.5)
    assert [r.key for r in DynamoCatalog(env.table).snapshot(DS).records] == [key]
    assert report.failed_messages == 0


def test_a_handler_that_raises_is_logged_with_its_trace_and_its_batch_ends_in_the_dlq(env, caplog):
    # GIVEN an annotate function that raises on every batch
    upload_images(env, 2)
    env.functions["AnnotateFunction"] = Recording(None, fail=True)  # type: ignore[assignment]
    # WHEN the queues are pumped
    with caplog.at_level(logging.ERROR, logger="medimage.local"):
        report = env.pump()
    # THEN each batch was retried until maxReceiveCount, then both uploads (+ S3's TestEvent) are in the DLQ
    assert count(env, "AnnotateDeadLetterQueue") == 3
    assert count(env, "AnnotateQueue") == 0
    assert report.errors and all("handler exploded" in e for _, e in report.errors)
    failed = [r for r in caplog.records if "AnnotateFunction <- sqs:" in r.getMessage()]
    assert failed and failed[0].exc_info is not None
    assert "whole batch is retried" in failed[0].getMessage()


def test_batch_item_failures_count_only_where_the_mapping_reports_them(env):
    # GIVEN a function that reports every item as failed, on a mapping without ReportBatchItemFailures
    sqs = boto3.client("sqs")
    queue = env.queue_urls()["AnnotateQueue"]
    sqs.purge_queue(QueueUrl=queue)

    class ReportsAll:
        def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
            return {"batchItemFailures": [{"itemIdentifier": r["messageId"]} for r in event["Records"]]}

    env.functions["AnnotateFunction"] = ReportsAll()  # type: ignore[assignment]
    src = source(env, "AnnotateFunction")
    assert src.report_batch_item_failures and src.batch_size == 10 and src.batching_window_s == 5
    src.report_batch_item_failures = False
    for i in range(3):
        sqs.send_message(QueueUrl=queue, MessageBody=json.dumps({"Records": [], "n": i}))
    # WHEN one batch is delivered, THEN Lambda ignores the response: every message is deleted
    assert env.deliver(src, PumpReport()) == 3
    assert count(env, "AnnotateQueue") == 0


def test_a_failed_commit_is_retried_as_lambda_retries_async_invocations_then_dead_lettered(env):
    # GIVEN a split function that raises
    split = Recording(None, fail=True)
    env.functions["SplitFunction"] = split  # type: ignore[assignment]
    # WHEN `_commit` is uploaded and the queues are pumped
    boto3.client("s3").put_object(Bucket=env.bucket, Key=f"incoming/labeled/{DS}/_commit", Body=b"")
    report = env.pump()
    # THEN the EventBridge event was tried ASYNC_ATTEMPTS times, then sent to the function's DeadLetterQueue
    assert len(split.events) == ASYNC_ATTEMPTS
    assert report.failed_messages >= 1
    assert count(env, "SplitDeadLetterQueue") == 1
    dead = boto3.client("sqs").receive_message(
        QueueUrl=env.queue_urls()["SplitDeadLetterQueue"], MessageAttributeNames=["All"]
    )["Messages"][0]
    assert json.loads(dead["Body"])["detail"]["object"]["key"] == f"incoming/labeled/{DS}/_commit"
    assert dead["MessageAttributes"]["ErrorMessage"]["StringValue"] == "handler exploded"
