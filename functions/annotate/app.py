"""Annotate Lambda: SQS batch of S3 notifications -> one annotation per object, partial batch failures.

Thin: parses the event and shapes the response; the logic is medimage.services.annotate."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from medimage.adapters.catalog import DynamoCatalog
from medimage.adapters.s3 import S3ObjectStore
from medimage.core.events import refs_from_sqs_body
from medimage.services.annotate import Annotator
from medimage.services.settings import AnnotateSettings

logger = Logger()
metrics = Metrics()
processor = BatchProcessor(event_type=EventType.SQS)


def annotator_for(bucket: str) -> Annotator:
    settings = AnnotateSettings.from_env()
    return Annotator(
        store=S3ObjectStore(bucket),
        catalog=DynamoCatalog(settings.common.catalog_table),
        resolver=settings.common.resolver(),
        limits=settings.limits,
        patient_salt=settings.patient_id_salt,
    )


def record_handler(record: SQSRecord) -> list[dict[str, Any]]:
    results = []
    for ref in refs_from_sqs_body(record.body):
        result = annotator_for(ref.bucket).annotate(ref.key)
        logger.info("annotated", extra={"result": result.to_dict()})
        metrics.add_metric(name=f"images_{result.status.value}", unit=MetricUnit.Count, value=1)
        results.append(result.to_dict())
    return results


@metrics.log_metrics
@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
