"""Split Lambda: an S3 "Object Created" event for `incoming/labeled/<dataset>/_commit`.

Thin: the logic is medimage.services.split (manifest versions, MinNewImages, starting training)."""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools import Logger

from medimage.adapters.catalog import DynamoCatalog
from medimage.adapters.events import refs_from_event
from medimage.adapters.queues import SqsBacklog
from medimage.adapters.s3 import S3ObjectStore
from medimage.adapters.workflow import StepFunctionsWorkflow
from medimage.core import layout
from medimage.core.errors import RejectedInput
from medimage.services.datasets import DatasetResolver
from medimage.services.split import Splitter

logger = Logger(service="split")


def splitter_for(bucket: str) -> Splitter:
    arn = os.environ.get("STATE_MACHINE_ARN")
    return Splitter(
        store=S3ObjectStore(bucket),
        catalog=DynamoCatalog(os.environ["CATALOG_TABLE"]),
        resolver=DatasetResolver.from_json(os.environ.get("DATASET_PRESETS")),
        workflow=StepFunctionsWorkflow(arn) if arn else None,
        min_new_images=int(os.environ.get("MIN_NEW_IMAGES", "1")),
        backlog=SqsBacklog(queue) if (queue := os.environ.get("ANNOTATE_QUEUE_URL")) else None,
        wait_s=float(os.environ.get("ANNOTATION_WAIT_S", "0")),
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
