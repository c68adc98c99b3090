"""What the template's event wiring becomes in local mode, as plain values for the moto calls.

Pure translations of resolved template properties (no AWS call, no state): the SQS event source
mappings of the functions, a bucket's notification configuration, a queue's attributes. ``LocalAws``
makes the calls with them.
"""

from __future__ import annotations

import json
from typing import Any

from medimage.local.delivery import EventSource
from medimage.local.template import Resolver, function_name_of
from medimage.template_file import resources_of_type


def sqs_mappings(template: dict[str, Any], resolver: Resolver) -> list[tuple[str, str, dict[str, Any]]]:
    """(function, queue reference, mapping properties) for every SQS event of a function and every
    ``AWS::Lambda::EventSourceMapping`` (whose function may be named through its alias); the queue is left
    unresolved (an ARN once resolved)."""
    mappings = [
        (logical, event["Properties"]["Queue"], event["Properties"])
        for logical, res in resources_of_type(template, "AWS::Serverless::Function").items()
        for event in res.get("Properties", {}).get("Events", {}).values()
        if event.get("Type") == "SQS"
    ]
    mappings += [
        (function_name_of(resolver.resolve(props["FunctionName"])), props["EventSourceArn"], props)
        for props in (
            res["Properties"]
            for res in resources_of_type(template, "AWS::Lambda::EventSourceMapping").values()
        )
    ]
    return mappings


def sqs_event_source(function: str, queue_url: str, queue_arn: str, props: dict[str, Any]) -> EventSource:
    """A mapping's batch size, batching window and partial-failure reporting, with Lambda's defaults."""
    return EventSource(
        function,
        queue_url,
        queue_arn,
        batch_size=int(props.get("BatchSize", 10)),
        batching_window_s=float(props.get("MaximumBatchingWindowInSeconds", 0)),
        report_batch_item_failures="ReportBatchItemFailures" in (props.get("FunctionResponseTypes") or []),
    )


def queue_attributes(props: dict[str, Any], visibility_timeout_s: int | None) -> dict[str, str]:
    """The SQS attributes of a queue's resolved properties; ``visibility_timeout_s`` (when not None)
    replaces the template's VisibilityTimeout."""
    attributes = {}
    if "RedrivePolicy" in props:
        attributes["RedrivePolicy"] = json.dumps(props["RedrivePolicy"])
    if "VisibilityTimeout" in props:
        timeout = visibility_timeout_s
        attributes["VisibilityTimeout"] = str(props["VisibilityTimeout"] if timeout is None else timeout)
    return attributes


def bucket_notification(config: dict[str, Any]) -> dict[str, Any]:
    """S3's NotificationConfiguration for a bucket's resolved template one (queues, EventBridge)."""
    notification: dict[str, Any] = {}
    if config.get("QueueConfigurations"):
        notification["QueueConfigurations"] = [
            {
                "QueueArn": q["Queue"],
                "Events": [q["Event"]],
                **(
                    {"Filter": {"Key": {"FilterRules": q["Filter"]["S3Key"]["Rules"]}}}
                    if "Filter" in q
                    else {}
                ),
            }
            for q in config["QueueConfigurations"]
        ]
    if config.get("EventBridgeConfiguration", {}).get("EventBridgeEnabled"):
        notification["EventBridgeConfiguration"] = {}
    return notification


def dead_letter_url(
    function: dict[str, Any],
    resolver: Resolver | None,
    attrs: dict[tuple[str, str], str],
    refs: dict[str, str],
) -> str | None:
    """The queue URL of a function's ``DeadLetterQueue`` (where failed asynchronous invocations go), from
    the created resources' attributes (``(logical, "Arn")``) and references (logical id to queue URL)."""
    assert resolver is not None
    dead_letter = function.get("Properties", {}).get("DeadLetterQueue") or {}
    if dead_letter.get("Type") != "SQS":
        return None
    arn = resolver.resolve(dead_letter["TargetArn"])
    logical = next((k for (k, a), v in attrs.items() if a == "Arn" and v == arn), None)
    return refs.get(logical) if logical else None
