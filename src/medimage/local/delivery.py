"""Event delivery as Lambda's event source mappings and asynchronous invocations do it, for one queue.

``deliver`` is the one body of every delivery: ``LocalAws.pump()`` (the demo and the tests) calls it until
the queues are empty, and each ``Poller`` thread of ``medimage up`` calls it in a loop. What it honours:

- SQS event source mappings: up to ``BatchSize`` messages, gathered for up to
  ``MaximumBatchingWindowInSeconds``; with ``ReportBatchItemFailures`` the listed items stay on the queue
  and the rest are deleted; a handler that raises leaves the whole batch. What stays becomes visible again
  after the queue's visibility timeout, and SQS (moto) moves it to the dead-letter queue after
  ``maxReceiveCount`` receives.
- EventBridge rules (a local queue stands in for Lambda's internal event queue): one event per invocation,
  retried after ``retry_delays_s`` as Lambda retries a failed asynchronous invocation, then sent to the
  function's ``DeadLetterQueue``.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import unquote_plus

from medimage.core.gate import verdict
from medimage.local.account import ACCOUNT, REGION

log = logging.getLogger("medimage.local")

# Attempts of an asynchronous (EventBridge) invocation before it counts as failed, as Lambda's default
# of two retries after the first attempt.
ASYNC_ATTEMPTS = 3
# Lambda waits about a minute before the second attempt and two before the third.
LAMBDA_ASYNC_RETRY_DELAYS_S = (60.0, 120.0)
SQS_MAX_MESSAGES = 10  # the most one ReceiveMessage returns


class Invocable(Protocol):
    def invoke(self, event: dict[str, Any]) -> Any: ...


@dataclass
class EventSource:
    """A queue a function consumes (an SQS event source, or the local target of an EventBridge rule)."""

    function: str
    queue_url: str
    queue_arn: str
    batch_size: int = 10
    eventbridge: bool = False
    batching_window_s: float = 0.0
    report_batch_item_failures: bool = False
    retry_delays_s: tuple[float, ...] = (0.0, 0.0)
    dead_letter_url: str | None = None

    @property
    def trigger(self) -> str:
        kind = "eventbridge" if self.eventbridge else "sqs"
        return f"{kind}:{self.queue_arn.rsplit(':', 1)[-1]}"


@dataclass
class PumpReport:
    invocations: int = 0
    messages: int = 0
    failed_messages: int = 0
    results: list[tuple[str, Any]] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)


def receive_batch(sqs: Any, source: EventSource, window_s: float = 0.0, wait_s: int = 0) -> list[dict]:
    """Up to ``batch_size`` messages: long-poll ``wait_s`` for the first, then gather for ``window_s``."""
    messages = _receive(sqs, source, min(source.batch_size, SQS_MAX_MESSAGES), wait_s)
    if not messages or window_s <= 0:
        return messages
    deadline = time.monotonic() + window_s
    batch = {m["MessageId"]: m for m in messages}  # a message received again keeps its newest receipt
    while len(batch) < source.batch_size and time.monotonic() < deadline:
        more = _receive(sqs, source, min(source.batch_size - len(batch), SQS_MAX_MESSAGES), 0)
        if not more:
            time.sleep(min(0.25, max(0.0, deadline - time.monotonic())))
        batch.update({m["MessageId"]: m for m in more})
    return list(batch.values())


def _receive(sqs: Any, source: EventSource, count: int, wait_s: int) -> list[dict]:
    return sqs.receive_message(
        QueueUrl=source.queue_url,
        MaxNumberOfMessages=count,
        WaitTimeSeconds=wait_s,
        AttributeNames=["All"],
        MessageAttributeNames=["All"],
    ).get("Messages", [])


def deliver(
    sqs: Any,
    function: Invocable,
    source: EventSource,
    report: PumpReport,
    window_s: float = 0.0,
    wait_s: int = 0,
) -> int:
    """Receive one batch from ``source`` and hand it to ``function``; the number of messages received."""
    messages = receive_batch(sqs, source, window_s, wait_s)
    if not messages:
        return 0
    if source.eventbridge:
        for message in messages:
            _deliver_async(sqs, function, source, report, message)
    else:
        _deliver_batch(sqs, function, source, report, messages)
    report.messages += len(messages)
    return len(messages)


def _deliver_batch(
    sqs: Any, function: Invocable, source: EventSource, report: PumpReport, messages: list[dict]
) -> None:
    event = {"Records": [sqs_record(m, source.queue_arn) for m in messages]}
    started = time.perf_counter()
    report.invocations += 1
    try:
        result = function.invoke(event)
    except Exception as exc:  # the mapping sees a failed invocation: every message is received again
        report.errors.append((source.function, f"{type(exc).__name__}: {exc}"))
        report.failed_messages += len(messages)
        _log_invocation(source, messages, started, "error: the whole batch is retried", exc)
        return
    report.results.append((source.function, result))
    failed: set[str] = set()
    if source.report_batch_item_failures and isinstance(result, dict):
        failed = {str(f.get("itemIdentifier")) for f in result.get("batchItemFailures") or []}
    report.failed_messages += len(failed)
    done = [m for m in messages if m["MessageId"] not in failed]
    for start in range(0, len(done), SQS_MAX_MESSAGES):
        chunk = done[start : start + SQS_MAX_MESSAGES]
        sqs.delete_message_batch(
            QueueUrl=source.queue_url,
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)],
        )
    outcome = f"ok, {len(failed)} failed items left for retry" if failed else "ok"
    _log_invocation(source, messages, started, outcome)


def _deliver_async(
    sqs: Any, function: Invocable, source: EventSource, report: PumpReport, message: dict
) -> None:
    attempt = int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
    started = time.perf_counter()
    report.invocations += 1
    try:
        result = function.invoke(json.loads(message["Body"]))
    except Exception as exc:
        report.errors.append((source.function, f"{type(exc).__name__}: {exc}"))
        if attempt < ASYNC_ATTEMPTS:
            delay = source.retry_delays_s[min(attempt, len(source.retry_delays_s)) - 1]
            sqs.change_message_visibility(
                QueueUrl=source.queue_url,
                ReceiptHandle=message["ReceiptHandle"],
                VisibilityTimeout=int(delay),
            )
            _log_invocation(
                source, [message], started, f"error (attempt {attempt}): retried in {delay:.0f} s", exc
            )
            return
        report.failed_messages += 1
        if source.dead_letter_url:
            sqs.send_message(
                QueueUrl=source.dead_letter_url,
                MessageBody=message["Body"],
                MessageAttributes={
                    "ErrorCode": {"DataType": "String", "StringValue": type(exc).__name__},
                    "ErrorMessage": {"DataType": "String", "StringValue": str(exc)[:1000] or "-"},
                },
            )
        where = "the dead-letter queue" if source.dead_letter_url else "dropped"
        _log_invocation(source, [message], started, f"error (attempt {attempt}): {where}", exc)
    else:
        report.results.append((source.function, result))
        _log_invocation(source, [message], started, "ok")
    sqs.delete_message(QueueUrl=source.queue_url, ReceiptHandle=message["ReceiptHandle"])


def message_keys(body: str) -> list[str]:
    """The object keys an S3 notification or an EventBridge S3 event names (for the log line only)."""
    try:
        payload = json.loads(body)
    except json.JSONDecodeError:
        return ["<not JSON>"]
    if not isinstance(payload, dict):
        return ["<not an object>"]
    if "detail" in payload:
        detail = payload.get("detail") or {}
        if "alarmName" in detail:  # a CloudWatch Alarm State Change
            return [f"alarm {detail['alarmName']}"]
        return [str((detail.get("object") or {}).get("key", "?"))]
    if payload.get("Event") == "s3:TestEvent":
        return ["<s3:TestEvent>"]
    records = payload.get("Records")
    if not isinstance(records, list):
        return ["<no Records>"]
    keys = [((r.get("s3") or {}).get("object") or {}).get("key", "?") for r in records if isinstance(r, dict)]
    return [unquote_plus(str(key)) for key in keys]


def _log_invocation(
    source: EventSource, messages: list[dict], started: float, outcome: str, exc: BaseException | None = None
) -> None:
    """One line per invocation: function, trigger, objects, duration, outcome (and the trace of an error)."""
    keys = [k for m in messages for k in message_keys(m.get("Body", ""))]
    shown = ", ".join(keys[:2]) + (f" (+{len(keys) - 2} more)" if len(keys) > 2 else "")
    seconds = time.perf_counter() - started
    line = "%s <- %s | %d objects [%s] | %.2f s | %s"
    args = (source.function, source.trigger, len(keys), shown, seconds, outcome)
    if exc is None:
        log.info(line, *args)
    else:
        log.error(line, *args, exc_info=exc)


def sqs_record(message: dict[str, Any], queue_arn: str) -> dict[str, Any]:
    """An SQS message as the Lambda event source mapping hands it to a function."""
    attributes = message.get("Attributes", {})
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": {
            "ApproximateReceiveCount": attributes.get("ApproximateReceiveCount", "1"),
            "SentTimestamp": attributes.get("SentTimestamp", "0"),
            "SenderId": attributes.get("SenderId", ACCOUNT),
            "ApproximateFirstReceiveTimestamp": attributes.get("ApproximateFirstReceiveTimestamp", "0"),
        },
        "messageAttributes": message.get("MessageAttributes", {}),
        "md5OfBody": message["MD5OfBody"],
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": REGION,
    }


class TaskInvoker:
    """A function as a Step Functions Task state invokes it (through ``moto_patches.route_lambda``), with
    the invocation's log line."""

    def __init__(self, function: Any) -> None:
        self.function = function

    def __call__(self, event: dict[str, Any]) -> Any:
        started = time.perf_counter()
        name = self.function.logical_id
        try:
            result = self.function.invoke(event)
        except Exception as exc:
            log.error("%s <- states:task | %.2f s | error", name, time.perf_counter() - started, exc_info=exc)
            raise
        log.info("%s <- states:task | %.2f s | %s", name, time.perf_counter() - started, task_outcome(result))
        return result


def task_outcome(result: Any) -> str:
    """The gate's decision or the promoted version, when the result carries one."""
    if not isinstance(result, dict):
        return "ok"
    if "passed" in result:
        reasons = "; ".join(str(r) for r in result.get("reasons") or [])
        return f"ok: gate {verdict(result)}, test accuracy {result.get('accuracy')} {reasons}".rstrip()
    if result.get("promoted"):
        return f"ok: promoted {result.get('version')}"
    return "ok"
