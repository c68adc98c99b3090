"""Promote Lambda: the Step Functions task after a passed gate. Thin: the logic is
medimage.services.promote.

Input: the execution input plus ``training`` (DescribeTrainingJob-shaped) and ``gate`` (the Gate output).
Output: ``{"promoted", "stage", "version", "model_key", "model_sha256", "previous_version", "pointer_key",
"promoted_at"}`` (``stage``: ``production``, or ``candidate`` where ``CANDIDATE_TRIAL`` is on and the
dataset has production: the model then runs silently beside production until a person ends the trial).
Raises ``ChampionChanged`` (caught by the state machine: gate again) when production moved on after the
gate, ``RegistryConflict`` (retried) when concurrent swaps kept winning.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger

from medimage.adapters.model_artifacts import S3ModelArtifacts
from medimage.adapters.registry_store import S3RegistryStore
from medimage.adapters.s3 import S3ObjectStore
from medimage.adapters.transient import transient_aws_errors
from medimage.services.promote import PromoteRequest, PromoteService
from medimage.services.settings import PromoteSettings

logger = Logger()


def promote_service_for(bucket: str) -> PromoteService:
    return PromoteService(
        store=S3ObjectStore(bucket),
        registry=S3RegistryStore(bucket),
        artifacts=S3ModelArtifacts(),
        trial=PromoteSettings.from_env().candidate_trial,
    )


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    request = PromoteRequest.from_event(event)
    with transient_aws_errors(f"promoting {request.dataset} {request.version}"):
        result = promote_service_for(request.bucket).run(request)
    logger.info("promoted", extra={"dataset": request.dataset, **result})
    return result
