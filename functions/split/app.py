"""Split Lambda: an S3 "Object Created" event for `incoming/labeled/<dataset>/_commit`.

Thin: the logic is medimage.services.split (manifest versions, MinNewImages, starting training)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger

from medimage.adapters.catalog import DynamoCatalog
from medimage.adapters.queues import SqsBacklog
from medimage.adapters.s3 import S3ObjectStore
from medimage.adapters.workflow import StepFunctionsWorkflow
from medimage.core import layout
from medimage.core.errors import RejectedInput
from medimage.core.events import refs_from_event
from medimage.services.settings import SplitSettings
from medimage.services.split import Splitter

logger = Logger()


def splitter_for(bucket: str) -> Splitter:
    settings = SplitSettings.from_env()
    return Splitter(
        store=S3ObjectStore(bucket),
        catalog=DynamoCatalog(settings.common.catalog_table),
        resolver=settings.common.resolver(),
        workflow=StepFunctionsWorkflow(settings.state_machine_arn) if settings.state_machine_arn else None,
        min_new_images=settings.min_new_images,
        backlog=SqsBacklog(settings.annotate_queue_url) if settings.annotate_queue_url else None,
        wait_s=settings.annotation_wait_s,
        shard_threshold=settings.shard_threshold,
        shard_bytes=settings.shard_bytes,
    )


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    results = []
    for ref in refs_from_event(event):
        try:
            parsed = layout.parse_labeled_key(ref.key)
        except RejectedInput as exc:
            results.append({"key": ref.key, "status": "ignored", "message": exc.message})
            continue
        if not parsed.is_commit:
            results.append({"key": ref.key, "status": "ignored", "message": "not a _commit marker"})
            continue
        result = splitter_for(ref.bucket).commit(parsed.dataset)
        logger.info(
            result.message,
            extra={"dataset": result.dataset, "status": result.status, "version": result.version},
        )
        results.append(result.to_dict())
    return {"results": results}
