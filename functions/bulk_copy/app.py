"""Bulk-copy Lambda: the steps of the bulk-import state machine (statemachine/bulk_import.asl.json).

Thin: the logic is medimage.services.bulk_import. The event names its step:
``{"action": "check", "input": {...}, "settings": {...}}``,
``{"action": "copy", "request": {...}, "items": [{"key": ...}]}`` (one ItemBatcher batch) or
``{"action": "finish", "request": {...}, "map": <the Map's output>}``.
``check`` answers a refused request with its code and message (the execution fails with them); the other
steps raise BulkImportProblem on a malformed request."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger

from medimage.adapters.bulk_copy import S3ImportCopier
from medimage.adapters.s3 import S3ObjectStore
from medimage.core.errors import BulkImportProblem
from medimage.services.bulk_import import BulkImporter, ImportRequest
from medimage.services.settings import BulkImportSettings

logger = Logger()


def importer() -> BulkImporter:
    settings = BulkImportSettings.from_env()
    return BulkImporter(
        store=S3ObjectStore(settings.data_bucket),
        copier=S3ImportCopier(settings.data_bucket),
        resolver=settings.common.resolver(),
        allowed_sources=settings.source_buckets,
    )


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    action = event.get("action") if isinstance(event, dict) else None
    if action == "check":
        # The execution's input, with what the state machine sets: the execution's name as the import's
        # id, and the template's bounds (which the caller cannot raise).
        # A refused request is an answer, not an error: the state machine fails with its code.
        given = event.get("input")
        payload = {**(given if isinstance(given, dict) else {}), **(event.get("settings") or {})}
        try:
            return {"ok": True, "request": importer().check(ImportRequest.from_payload(payload))}
        except BulkImportProblem as exc:
            logger.info("bulk import refused", extra={"code": exc.code})
            return {"ok": False, "code": exc.code, "message": exc.message}
    request = ImportRequest.from_payload(event.get("request"))
    if action == "copy":
        items = event.get("items")
        if not isinstance(items, list):
            raise BulkImportProblem("a copy step needs a list of items", "bad_import_input")
        keys = [str(item["key"]) for item in items if isinstance(item, dict) and item.get("key")]
        result = importer().copy_batch(request, keys)
        counts = {k: v for k, v in result.to_dict().items() if k not in ("ignored_keys", "failures")}
        logger.info("batch copied", extra={"dataset": request.dataset, **counts})
        return counts
    if action == "finish":
        summary = importer().finish(request, event.get("map"))
        logger.info(
            "bulk import finished",
            extra={k: summary[k] for k in ("dataset", "copied", "skipped", "failed", "committed")},
        )
        return summary
    raise BulkImportProblem(f"unknown bulk-import step {action!r}", "bad_import_input")
