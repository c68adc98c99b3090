"""Guarantee: every uploaded object ends accepted (one catalog record per dataset + sha256) or quarantined
with a reason, never both, never neither; nothing is deleted before its copy is stored.

The template's queues, table and bucket in moto, S3 notifications delivered to the real annotate handler
(``LocalAws``), under duplicated and reordered deliveries, 8 concurrent uploaders, injected AWS faults and
a crash of the handler after each of its AWS calls."""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from harness.faults.injector import FaultInjector
from harness.faults.plan import CrashRule, FaultRule
from harness.faults.races import run_threads
from medimage.adapters.catalog import DynamoCatalog
from medimage.core import layout
from medimage.local.delivery import PumpReport
from medimage.local.environment import LocalAws
from medimage.local.synthetic import BAD_FILE_CODES
from tests.faults.pipeline import DS, audit, bad, images, put

ANNOTATE = "AnnotateFunction"


@pytest.fixture
def env() -> Iterator[LocalAws]:
    from moto import mock_aws

    from medimage.adapters.aws import reset_clients

    with mock_aws():
        reset_clients()
        yield LocalAws().create()
    reset_clients()


def annotate_source(env: LocalAws) -> Any:
    return next(s for s in env.sources if s.function == ANNOTATE)


def drain(env: LocalAws) -> list[str]:
    """Take every message off the annotate queue; their bodies."""
    sqs, url = boto3.client("sqs"), annotate_source(env).queue_url
    bodies = []
    while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
        for m in messages:
            bodies.append(m["Body"])
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    return bodies


def test_the_same_object_delivered_three_times_and_out_of_order_ends_in_one_place(env):
    # GIVEN uploads whose notifications arrive three times each, the last upload's first
    good, rejected = images(6), bad(2)
    put(env, good + rejected)
    bodies = [b for b in drain(env) if "s3:TestEvent" not in b]
    assert len(bodies) == len(good + rejected)
    deliveries = [body for body in reversed(bodies) for _ in range(3)]
    random.Random(5).shuffle(deliveries)
    sqs, url = boto3.client("sqs"), annotate_source(env).queue_url
    for body in deliveries:
        sqs.send_message(QueueUrl=url, MessageBody=body)
    # WHEN they are all delivered to the annotate function
    report = env.pump()
    # THEN each object is catalogued or quarantined once, with the same catalog as one clean delivery
    assert report.errors == []
    result = audit(env, {k for k, _ in good + rejected})
    assert (result.accepted, result.quarantined) == (6, 2)
    assert report.messages >= len(deliveries)


def wait_until_idle(env: LocalAws, timeout_s: float = 120.0) -> None:
    """Until every event source queue has been empty (nothing visible or in flight) for a second."""
    sqs = boto3.client("sqs")
    deadline, quiet_since = time.monotonic() + timeout_s, None
    while time.monotonic() < deadline:
        busy = 0
        for source in env.sources:
            attributes = sqs.get_queue_attributes(
                QueueUrl=source.queue_url,
                AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
            )["Attributes"]
            busy += int(attributes["ApproximateNumberOfMessages"]) + int(
                attributes["ApproximateNumberOfMessagesNotVisible"]
            )
        if busy:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since > 1.0:
            return
        time.sleep(0.2)
    raise AssertionError("the queues never went quiet")


def test_eight_clients_uploading_at_once_lose_nothing_and_record_each_image_once():
    from moto import mock_aws

    from medimage.adapters.aws import reset_clients

    with mock_aws():
        reset_clients()
        env = LocalAws(visibility_timeout_s=1, concurrent=True).create()
        good, rejected = images(40, seed=2), bad()
        # Each client uploads its share, two of its neighbour's keys again (same bytes) and one image
        # of its share again under a new key (a duplicate).
        shares = [good[i::8] for i in range(8)]
        plans = {}
        for i, share in enumerate(shares):
            neighbour = shares[(i + 1) % 8][:2]
            copy_key = share[0][0].replace(".jpeg", "-copy.jpeg")
            plans[f"client-{i}"] = [*share, *neighbour, (copy_key, share[0][1]), rejected[i % len(rejected)]]
        stop = threading.Event()
        pollers = env.start_pollers(stop)
        try:
            results = run_threads({name: lambda p=plan: put(env, p) for name, plan in plans.items()})
            assert all(r is None for r in results.values()), results
            wait_until_idle(env)
        finally:
            stop.set()
            for poller in pollers:
                poller.join(30)
        keys = {key for plan in plans.values() for key, _ in plan}
        result = audit(env, keys)
        assert result.accepted == len(good) + 8 and result.quarantined == len(rejected)
        snapshot = DynamoCatalog(env.table).snapshot(DS)
        assert len(snapshot.records) == len(good) and snapshot.duplicates == 8
        assert sum(snapshot.quarantined.values()) == len(rejected)
    reset_clients()


def calls_of_one_clean_run(env: LocalAws, upload: tuple[str, bytes]) -> int:
    with FaultInjector() as injector:
        injector.wrap_local_aws(env)
        put(env, [upload])
        env.pump()
    return sum(1 for c in injector.calls if c.function == ANNOTATE)


@pytest.mark.parametrize("kind", ["accepted", "quarantined"])
def test_an_annotate_crash_after_any_aws_call_converges_on_redelivery(env, kind):
    """Crash the handler after its 1st, 2nd, ... AWS call (as if the Lambda runtime died there): nothing
    is deleted before its copy, reason and record are stored, and the redelivered message finishes it."""
    [(empty_key, empty)] = bad(1)
    renamed = [(empty_key.replace("NORMAL/", f"NORMAL/{i}-"), empty) for i in range(12)]
    pool = images(12, seed=3) if kind == "accepted" else renamed
    steps = calls_of_one_clean_run(env, pool[0])
    assert steps >= (2 if kind == "accepted" else 6)
    original_functions = dict(env.functions)
    for step, upload in zip(range(steps), pool[1:], strict=False):
        env.functions = dict(original_functions)
        crash = CrashRule(function=ANNOTATE, after_calls=step, times=1)
        with FaultInjector(crashes=[crash]) as injector:
            injector.wrap_local_aws(env)
            put(env, [upload])
            source = annotate_source(env)
            first = PumpReport()
            while env.deliver(source, first) and not first.errors:
                pass
            assert first.errors and "FunctionCrashed" in first.errors[0][1], f"no crash at step {step}"
            assert_nothing_deleted_before_its_copy(env, upload[0])
            env.pump()
        audit(env, {upload[0]})
    env.functions = original_functions
    result = audit(env, {k for k, _ in pool[:steps]})
    assert (result.accepted if kind == "accepted" else result.quarantined) == steps


def assert_nothing_deleted_before_its_copy(env: LocalAws, key: str) -> None:
    s3 = boto3.client("s3")
    if s3.list_objects_v2(Bucket=env.bucket, Prefix=key).get("KeyCount"):
        return  # the original is still there
    for stored in (layout.quarantine_key(DS, key), layout.quarantine_reason_key(DS, key)):
        assert s3.list_objects_v2(Bucket=env.bucket, Prefix=stored).get("KeyCount"), f"{stored} missing"
    item = boto3.client("dynamodb").get_item(
        TableName=env.table, Key={"dataset": {"S": DS}, "item": {"S": f"q#{key}"}}
    )
    assert "Item" in item, f"{key} was deleted before its quarantine record was stored"
    reason = json.loads(
        s3.get_object(Bucket=env.bucket, Key=layout.quarantine_reason_key(DS, key))["Body"].read()
    )
    assert reason["code"] == BAD_FILE_CODES[key.rsplit("/", 1)[1].split("-", 1)[1]]


def test_annotate_under_throttles_server_errors_and_lost_answers_converges(env):
    good, rejected = images(20, seed=4), bad()
    put(env, good + rejected)
    with FaultInjector([FaultRule(rate=0.25, function="*")], seed=11) as injector:
        injector.wrap_local_aws(env)
        report = env.pump()
    assert len(injector.faults) >= 20 and injector.retries >= 20
    result = audit(env, {k for k, _ in good + rejected})
    assert (result.accepted, result.quarantined) == (20, len(rejected))
    assert report.messages >= len(good + rejected)
