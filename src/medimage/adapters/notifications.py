"""Notifications to the people who run the pipeline: an SNS topic (the `Notifier` port)."""

from __future__ import annotations

from typing import Any

from medimage.adapters.aws import client


class SnsNotifier:
    """Publishes to ``topic_arn``; an empty ARN (a stack without the topic) publishes nothing."""

    def __init__(self, topic_arn: str, sns: Any | None = None) -> None:
        self.topic_arn = topic_arn
        self._sns = sns

    def publish(self, subject: str, message: str) -> None:
        if not self.topic_arn:
            return
        sns = self._sns or client("sns")
        sns.publish(TopicArn=self.topic_arn, Subject=subject, Message=message)
