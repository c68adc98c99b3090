"""How many messages a queue still holds: the annotation backlog that a commit waits for."""

from __future__ import annotations

from typing import Any

from medimage.adapters.aws import client

_COUNTS = (
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
)


class SqsBacklog:
    def __init__(self, queue_url: str, sqs: Any | None = None) -> None:
        self.queue_url = queue_url
        self._sqs = sqs or client("sqs")

    def pending(self) -> int:
        attributes = self._sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=list(_COUNTS))
        return sum(int(attributes["Attributes"].get(name, 0)) for name in _COUNTS)
