"""Gate Lambda: the Step Functions task after training. Thin: the logic is medimage.services.gate.

Input: the execution input plus ``training`` (the DescribeTrainingJob-shaped Train output).
Output: ``{"passed", "outcome", "images_needed", "class_images_needed", "version", "reasons", "accuracy",
"champion_version", "gate_key"}`` (``outcome``: pass, fail or insufficient_evidence); the full decision,
with every interval and the paired comparison, is written to ``models/<dataset>/<version>/gate.json``.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger

from medimage.adapters.model_artifacts import S3ModelArtifacts
from medimage.adapters.registry_store import S3RegistryStore
from medimage.adapters.s3 import S3ObjectStore
from medimage.adapters.transient import transient_aws_errors
from medimage.evaluation.champion import LiteRTChampionEvaluator
from medimage.services.gate import GateRequest, GateService
from medimage.services.settings import GateSettings

logger = Logger()


def gate_service_for(bucket: str) -> GateService:
    store = S3ObjectStore(bucket)
    return GateService(
        store=store,
        registry=S3RegistryStore(bucket),
        artifacts=S3ModelArtifacts(),
        evaluator=LiteRTChampionEvaluator(store),
        min_accuracy=GateSettings.from_env().min_accuracy_override,
    )


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    request = GateRequest.from_event(event)
    with transient_aws_errors(f"gating {request.dataset} {request.version}"):
        result = gate_service_for(request.bucket).run(request)
    logger.info("gate decision", extra={"dataset": request.dataset, **result})
    return result
