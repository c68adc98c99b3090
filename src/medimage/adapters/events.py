"""Reading S3 object keys out of the event shapes that reach the functions.

S3 notifications (direct, or wrapped in an SQS message body) carry URL-encoded keys with '+' for
spaces; EventBridge "Object Created" events carry them the same way. The ``s3:TestEvent`` that S3 sends
when a notification is configured carries no records at all.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from medimage.core.errors import MedimageError
from medimage.core.layout import decode_event_key


class BadEvent(MedimageError):
    code = "bad_event"


@dataclass(frozen=True)
class ObjectRef:
    bucket: str
    key: str  # decoded
    size: int | None = None


def refs_from_s3_notification(body: dict[str, Any]) -> list[ObjectRef]:
    if body.get("Event") == "s3:TestEvent":
        return []
    records = body.get("Records")
    if not isinstance(records, list):
        raise BadEvent("the S3 notification has no Records list")
    refs = []
    for record in records:
        try:
            s3 = record["s3"]
            refs.append(
                ObjectRef(
                    bucket=s3["bucket"]["name"],
                    key=decode_event_key(s3["object"]["key"]),
                    size=s3["object"].get("size"),
                )
            )
        except (KeyError, TypeError):
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
            return [
                ObjectRef(
                    bucket=detail["bucket"]["name"],
                    key=decode_event_key(detail["object"]["key"]),
                    size=detail["object"].get("size"),
                )
            ]
        except (KeyError, TypeError):
            raise BadEvent("the EventBridge S3 event lacks detail.bucket.name or detail.object.key") from None
    return refs_from_s3_notification(event)
