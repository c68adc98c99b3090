"""Reading the objects out of the event shapes that reach the functions (the one parser of S3 events).

S3 notifications (direct, or wrapped in an SQS message body) carry URL-encoded keys with '+' for
spaces; EventBridge "Object Created" events carry them the same way. The ``s3:TestEvent`` that S3 sends
when a notification is configured carries no records at all; records of other event types (removals)
name no new object and are left out.
"""

from __future__ import annotations

import json
from typing import Any

from medimage.core.errors import BadEvent
from medimage.core.layout import decode_event_key
from medimage.core.objects import ObjectRef


def _ref(bucket: str, obj: dict[str, Any]) -> ObjectRef:
    return ObjectRef(
        bucket=bucket,
        key=decode_event_key(obj["key"]),
        size=obj.get("size"),
        etag=str(obj.get("eTag") or obj.get("etag") or ""),
        sequencer=str(obj.get("sequencer") or ""),
        version_id=str(obj.get("versionId") or obj.get("version-id") or ""),
    )


def refs_from_s3_notification(body: dict[str, Any]) -> list[ObjectRef]:
    if body.get("Event") == "s3:TestEvent":
        return []
    records = body.get("Records")
    if not isinstance(records, list):
        raise BadEvent("the S3 notification has no Records list")
    refs = []
    for record in records:
        try:
            if not str(record.get("eventName") or "ObjectCreated").startswith("ObjectCreated"):
                continue
            s3 = record["s3"]
            refs.append(_ref(s3["bucket"]["name"], s3["object"]))
        except (KeyError, TypeError, AttributeError):
            raise BadEvent("an S3 notification record lacks s3.bucket.name or s3.object.key") from None
    return refs


def refs_from_sqs_body(body: str) -> list[ObjectRef]:
    try:
        payload = json.loads(body)
    except json.JSONDecodeError as exc:
        raise BadEvent(f"the SQS message body is not JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise BadEvent("the SQS message body is not a JSON object")
    return refs_from_s3_notification(payload)


def refs_from_event(event: dict[str, Any]) -> list[ObjectRef]:
    """An EventBridge S3 event or a direct S3 notification."""
    if event.get("source") == "aws.s3" and "detail" in event:
        try:
            detail = event["detail"]
            return [_ref(detail["bucket"]["name"], detail["object"])]
        except (KeyError, TypeError):
            raise BadEvent("the EventBridge S3 event lacks detail.bucket.name or detail.object.key") from None
    return refs_from_s3_notification(event)
