"""Rollback Lambda: a ``CloudWatch Alarm State Change`` event (EventBridge rule ``InferenceAlarm``) for an
alarm going to ALARM. Thin: the logic is medimage.services.alarm_rollback.

Output: ``{"rolled_back", "code", "message", "alarm", "dataset", "version", "withdrawn"}``; ``code`` is
``rolled_back`` or why production stayed (``outside_watch_window``, ``already_rolled_back``,
``nothing_to_roll_back_to``, ``unknown_alarm``...). Raises ``BadEvent`` (code ``bad_alarm_event``) for an
event that is not an alarm state change, ``PromoteRefused`` when the older model's file is gone; Lambda
retries those, then sends the event to the dead-letter queue.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger

from medimage.adapters.registry_store import S3RegistryStore
from medimage.adapters.s3 import S3ObjectStore
from medimage.adapters.transient import transient_aws_errors
from medimage.services.alarm_rollback import AlarmEvent, AlarmRollback
from medimage.services.settings import RollbackSettings

logger = Logger()


def rollback_service() -> AlarmRollback:
    settings = RollbackSettings.from_env()
    return AlarmRollback(S3ObjectStore(settings.data_bucket), S3RegistryStore(settings.data_bucket), settings)


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    alarm = AlarmEvent.from_event(event)
    with transient_aws_errors(f"handling alarm {alarm.name}"):
        outcome = rollback_service().handle(alarm)
    result = outcome.to_dict()
    logger.info(outcome.message, extra={k: v for k, v in result.items() if k != "message"})
    return result
