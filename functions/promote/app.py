"""Promote Lambda: the Step Functions task after a passed gate. Thin: the logic is
medimage.services.promote (and medimage.services.sign_off for a person's sign-off).

Input: the execution input plus ``training`` (DescribeTrainingJob-shaped) and ``gate`` (the Gate output).
Output: ``{"promoted", "stage", "version", "model_key", "model_sha256", "previous_version", "pointer_key",
"promoted_at"}`` (``stage``: ``production``, or ``candidate`` where ``CANDIDATE_TRIAL`` is on and the
dataset has production: the model then runs silently beside production until a person ends the trial).
Raises ``ChampionChanged`` (caught by the state machine: gate again) when production moved on after the
gate, ``RegistryConflict`` (retried) when concurrent swaps kept winning.

With ``ApprovalRequired`` the state machine names an ``action`` (``services.sign_off.ACTIONS``):
``stage_for_sign_off`` (publish, nominate a candidate, never replace production; adds
``timeout_seconds``), ``request_sign_off`` (the ``.waitForTaskToken`` task: keep the token, notify),
``sign_off`` (apply an approval) and ``close_sign_off`` (a rejection or a timeout).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger

from medimage.adapters.model_artifacts import S3ModelArtifacts
from medimage.adapters.notifications import SnsNotifier
from medimage.adapters.registry_store import S3RegistryStore
from medimage.adapters.s3 import S3ObjectStore
from medimage.adapters.transient import transient_aws_errors
from medimage.core.errors import PromoteRefused
from medimage.core.sign_off import timeout_seconds
from medimage.services.promote import PromoteRequest, PromoteService
from medimage.services.settings import PromoteSettings
from medimage.services.sign_off import SignOffService, SignOffTask

logger = Logger()


def promote_service_for(bucket: str) -> PromoteService:
    return PromoteService(
        store=S3ObjectStore(bucket),
        registry=S3RegistryStore(bucket),
        artifacts=S3ModelArtifacts(),
        trial=PromoteSettings.from_env().candidate_trial,
    )


def sign_off_service_for(bucket: str) -> SignOffService:
    return SignOffService(
        store=S3ObjectStore(bucket),
        registry=S3RegistryStore(bucket),
        notifier=SnsNotifier(PromoteSettings.from_env().sign_off_topic_arn),
    )


def _sign_off(action: str, event: dict[str, Any]) -> dict[str, Any]:
    task = SignOffTask.from_event(event)
    service = sign_off_service_for(task.bucket)
    with transient_aws_errors(f"{action} of {task.dataset} {task.version}"):
        if action == "request_sign_off":
            return service.request(task)
        if action == "sign_off":
            return service.approve(task)
        return service.close(task)


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    action = str(event.get("action") or "promote")
    if action in ("request_sign_off", "sign_off", "close_sign_off"):
        result = _sign_off(action, event)
        logger.info(action, extra={"dataset": event.get("dataset"), **result})
        return result
    if action not in ("promote", "stage_for_sign_off"):
        raise PromoteRefused(f"unknown promote action {action!r}")
    request = PromoteRequest.from_event(event)
    hold = action == "stage_for_sign_off"
    wait = timeout_seconds(event.get("timeout_hours")) if hold else None
    with transient_aws_errors(f"promoting {request.dataset} {request.version}"):
        result = promote_service_for(request.bucket).run(request, hold=hold)
    if wait is not None:
        result["timeout_seconds"] = wait
    logger.info("promoted", extra={"dataset": request.dataset, **result})
    return result
