"""Inference Lambda (one container image, one entry point `lambda_handler`).

`lambda_handler` dispatches on the event's shape:
* API Gateway REST proxy events -> `POST /predict`, `GET /health`, `GET /` (the upload page), STOW-RS
  `POST /studies[/{study}]` (also under `/datasets/{dataset}/`) and the review worklist (`GET /review`,
  `GET /review/item`, `POST /review/label`), answered as proxy responses; anything else is a JSON 404;
* SQS records wrapping S3 `ObjectCreated` events for ``incoming/unlabeled/<dataset>/`` -> drop-to-label,
  answered with partial batch failures.
The handler only parses and shapes; `medimage.inference` holds the logic, `medimage.adapters.model_store`
the S3 access. The model is loaded once per container and follows the production pointer.

Where the pointer names a candidate on silent trial, `run_silent_trial` runs it on a share of the images
after the answer is built (API) or the result is written (drop-to-label), and records the pair
(`medimage.inference.trial`); the caller's answer, the result files and the review queue never see it,
and it never raises.

A cold start imports only what `POST /predict` needs: the SQS path (Powertools' batch processing,
drop-to-label and its S3 adapter), the upload page and botocore are imported on their first use, and the
X-Ray SDK only when tracing is on (`medimage.inference.tracing`). Logs are the standard library's, in
Lambda's JSON log format, and the template's metric filters make the metrics of them
(`medimage.inference.telemetry`). The three routes are a table here rather than Powertools'
event handler, whose package imports every resolver it has (AppSync's asyncio, ssl, sockets, subprocess)
and every event data class: a fifth of the import time for a routing this API does in a dictionary lookup
(docs/decisions.md).
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable
from functools import cache
from typing import TYPE_CHECKING, Any

from medimage.core.errors import MedimageError
from medimage.inference.api import ApiError, error_body, parse_predict_request, raw_body
from medimage.inference.cache import LocalModelSource, ModelCache
from medimage.inference.service import InferenceService
from medimage.inference.settings import InferenceSettings
from medimage.inference.telemetry import (
    PACS_PUSH_FAILED,
    PACS_PUSHED,
    PREDICTION,
    REJECTED,
    SERVICE,
    prediction_fields,
    rejection_fields,
)
from medimage.inference.tracing import make_tracer

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.batch import BatchProcessor
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

    from medimage.core.objects import ObjectRef
    from medimage.inference.drop_to_label import DropLabeler, LabelOutcome
    from medimage.inference.ports import ModelSource
    from medimage.inference.review_api import ReviewApi
    from medimage.inference.service import PredictionResult
    from medimage.inference.stow import StowStore, StowTarget
    from medimage.inference.trial import SilentTrial

logger = logging.getLogger(SERVICE)
tracer = make_tracer()
Proxy = dict[str, Any]  # an API Gateway REST proxy event, or the proxy response


@cache
def service() -> InferenceService:
    """Built on first use and kept for the container's life: the model cache lives in it.

    ``MEDIMAGE_MODEL`` (a local ``.tflite`` with ``model.json`` beside it) replaces the S3 registry for
    `medimage serve --model`.
    """
    config = InferenceSettings.from_env()
    source: ModelSource
    if config.local_model:
        source = LocalModelSource(config.local_model, config.default_dataset)
    else:
        from medimage.adapters.model_store import S3ModelStore

        source = S3ModelStore(config.data_bucket, cache_dir=config.model_cache_dir)
    return InferenceService(ModelCache(source, config.check_interval_s), config)


@cache
def labeler() -> DropLabeler:
    """Drop-to-label; with ``PACS_STOW_URL`` set, each SR also goes back to the PACS by STOW-RS."""
    from medimage.adapters.s3 import S3ObjectStore
    from medimage.inference.drop_to_label import DropLabeler

    config = service().config
    store = S3ObjectStore(config.data_bucket)
    pacs = None
    if config.pacs_stow_url:
        from medimage.adapters.dicomweb import UrllibDicomWebClient, secret_reader
        from medimage.results.pacs import PacsPusher

        credentials = secret_reader(config.pacs_secret_arn) if config.pacs_secret_arn else None
        pacs = PacsPusher(UrllibDicomWebClient(credentials), config.pacs_stow_url, store)
    return DropLabeler(service(), store, pacs=pacs, trial=run_silent_trial)


@cache
def stow_store() -> StowStore:
    import os
    from dataclasses import replace

    from medimage.adapters.s3 import S3ObjectStore
    from medimage.inference.stow import StowStore
    from medimage.services.datasets import DatasetResolver

    svc = service()
    config = svc.config
    datasets = (config.default_dataset, *(d for d in config.datasets if d != config.default_dataset))
    return StowStore(
        S3ObjectStore(config.data_bucket),
        datasets,
        svc.resolve_dataset,
        DatasetResolver.from_json(os.environ.get("DATASET_PRESETS")).preset_for,
        replace(svc.limits, max_bytes=config.max_request_bytes),
    )


@cache
def review_api() -> ReviewApi:
    import os

    from medimage.adapters.s3 import S3ObjectStore
    from medimage.inference.review_api import ReviewApi
    from medimage.services.datasets import DatasetResolver

    presets = DatasetResolver.from_json(os.environ.get("DATASET_PRESETS"))
    return ReviewApi(service(), S3ObjectStore(service().config.data_bucket), presets.preset_for)


@cache
def trial() -> SilentTrial:
    """Built the first time a candidate is on trial: the pairs' S3 client only when they are written."""
    from medimage.inference.trial import SilentTrial

    config = service().config

    def sink() -> Any:
        from medimage.adapters.s3 import S3ObjectStore

        return S3ObjectStore(config.data_bucket)

    return SilentTrial(
        service().cache,
        cache(sink),
        config.candidate_share,
        config.review_threshold,
        config.trial_flush_pairs,
        config.trial_flush_s,
    )


def run_silent_trial(result: PredictionResult, data: bytes, source: str, key: str | None = None) -> None:
    """After the answer is ready: the candidate on trial, if there is one, on a share of the images; then
    the pairs that are due are written. Never raises, never changes ``result``."""
    config = service().config
    try:
        if config.candidate_share > 0 and service().cache.has_candidate(result.dataset):
            trial().run(result, data, source, key)
        elif trial.cache_info().currsize:
            trial().flush()
    except Exception:
        logger.exception("silent trial failed", extra={"dataset": result.dataset})


@cache
def batch_processor() -> BatchProcessor:
    from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType

    return BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


def _response(status: int, content_type: str, body: str) -> Proxy:
    return {
        "statusCode": status,
        "headers": {"Content-Type": content_type},
        "body": body,
        "isBase64Encoded": False,
    }


def _json(status: int, doc: dict[str, Any]) -> Proxy:
    return _response(status, "application/json", json.dumps(doc))


# ---------------------------------------------------------------- API Gateway
def correlation_id(event: Proxy) -> str | None:
    """API Gateway's request id, on each line of the request (Lambda's own request id is added too)."""
    return (event.get("requestContext") or {}).get("requestId")


@tracer.capture_method
def predict(event: Proxy) -> Proxy:
    svc = service()
    request = parse_predict_request(
        event.get("body"),
        bool(event.get("isBase64Encoded")),
        event.get("headers"),
        event.get("queryStringParameters"),
        max_bytes=svc.config.max_request_bytes,
    )
    result = svc.predict(
        request.image, request.dataset, max_bytes=svc.config.max_request_bytes, explain=request.explain
    )
    logger.info(
        PREDICTION, extra={**prediction_fields(result, "api"), "correlation_id": correlation_id(event)}
    )
    response = _json(200, result.api_body())
    run_silent_trial(result, request.image, "api")
    return response


def health(event: Proxy) -> Proxy:
    return _json(200, service().health())


def index(event: Proxy) -> Proxy:
    from medimage.inference.page import INDEX_HTML

    return _response(200, "text/html; charset=utf-8", INDEX_HTML)


def review(event: Proxy) -> Proxy:
    if not service().config.data_bucket:
        raise ApiError(503, "no_store", "the review queue is in the data bucket: none is configured here")
    return _json(*review_api().handle(event))


def _dicom_json(status: int, doc: dict[str, Any]) -> Proxy:
    return _response(status, "application/dicom+json", json.dumps(doc))


@tracer.capture_method
def stow(event: Proxy, target: StowTarget) -> Proxy:
    """STOW-RS: every instance stored for drop-to-label or quarantined; the Store Instances Response."""
    from medimage.core.dicomweb import (
        StowRequestError,
        header,
        parse_stow_body,
        request_error_response,
        response_status,
        store_response,
    )

    if not service().config.data_bucket:
        raise ApiError(503, "no_store", "STOW-RS stores into the data bucket: none is configured here")
    try:
        parts = parse_stow_body(header(event.get("headers"), "content-type"), raw_body(event))
    except StowRequestError as exc:
        fields = rejection_fields(exc.code, "stow", status=exc.status, reason=exc.message)
        logger.info(REJECTED, extra={**fields, "correlation_id": correlation_id(event)})
        return _dicom_json(exc.status, request_error_response(exc))
    outcomes = stow_store().store_all(parts, target)
    for outcome in outcomes:
        if not outcome.stored:
            fields = rejection_fields(outcome.code or "rejected", "stow", reason=outcome.message)
            logger.info(REJECTED, extra={**fields, "correlation_id": correlation_id(event)})
    stored = sum(1 for o in outcomes if o.stored)
    logger.info(
        "stow",
        extra={
            "service": SERVICE,
            "instances": len(outcomes),
            "stored": stored,
            "failed": len(outcomes) - stored,
            "correlation_id": correlation_id(event),
        },
    )
    return _dicom_json(response_status(outcomes), store_response(outcomes))


ROUTES: dict[tuple[str, str], Callable[[Proxy], Proxy]] = {
    ("POST", "/predict"): predict,
    ("GET", "/health"): health,
    ("GET", "/"): index,
    ("GET", "/review"): review,
    ("GET", "/review/item"): review,
    ("POST", "/review/label"): review,
}


def handle_api_error(exc: ApiError, event: Proxy) -> Proxy:
    fields = rejection_fields(exc.code, "api", status=exc.status, reason=exc.message)
    logger.info(REJECTED, extra={**fields, "correlation_id": correlation_id(event)})
    return _json(exc.status, exc.body())


def handle_api(event: Proxy) -> Proxy:
    """Route a REST proxy event; every error is a JSON answer with a stable code."""
    method, path = event.get("httpMethod"), event.get("path")
    route = ROUTES.get((method, path))
    target = None
    if route is None and method == "POST" and "studies" in str(path):
        from medimage.inference.stow import stow_target

        target = stow_target(str(path), event.get("queryStringParameters"))
    if route is None and target is None:
        message = (
            f"no route {method} {path}; try POST /predict, POST /studies, GET /review, GET /health or GET /"
        )
        return _json(404, error_body("not_found", message))
    try:
        return route(event) if route is not None else stow(event, target)
    except ApiError as exc:
        return handle_api_error(exc, event)
    except MedimageError as exc:
        return handle_api_error(ApiError.from_error(exc), event)
    except Exception as exc:  # a fault of ours (the registry unreachable, a bug): logged with its trace
        logger.exception("unexpected error", extra={"correlation_id": correlation_id(event)})
        message = f"internal error ({type(exc).__name__}); see the function's logs"
        return _json(500, error_body("internal", message))


# ---------------------------------------------------------------- SQS-wrapped S3 events
def _log_outcome(outcome: LabelOutcome) -> None:
    if outcome.result is not None:
        logger.info(PREDICTION, extra={**prediction_fields(outcome.result, "s3"), "key": outcome.key})
    if outcome.pacs is not None:
        push = outcome.pacs
        fields = {"service": SERVICE, "dataset": outcome.dataset, "attempts": push.attempts}
        if push.pushed:
            logger.info(PACS_PUSHED, extra=fields)
        else:
            fields |= {"code": push.code, "http_status": push.status, "failure_key": push.failure_key}
            logger.warning(PACS_PUSH_FAILED, extra=fields)
    elif outcome.status == "quarantined":
        code = (outcome.reason or {}).get("code", "rejected")
        logger.warning(REJECTED, extra=rejection_fields(code, "s3", key=outcome.key, reason=outcome.reason))
    else:
        logger.info(outcome.status, extra={"key": outcome.key, "dataset": outcome.dataset})


@tracer.capture_method
def handle_sqs(event: dict[str, Any]) -> dict[str, Any]:
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

    from medimage.core.events import refs_from_sqs_body
    from medimage.core.objects import batch_id

    records = event["Records"]
    processor = batch_processor()
    refs: list[ObjectRef] = []
    for raw in records:
        # A malformed message adds nothing here; the record handler fails it (retried, then dead-lettered).
        with contextlib.suppress(MedimageError, ValueError, KeyError, TypeError, AttributeError):
            refs.extend(refs_from_sqs_body(SQSRecord(raw).body))  # S3's s3:TestEvent has none
    batch = batch_id(refs)
    outcomes: list[LabelOutcome] = []

    def record_handler(record: SQSRecord) -> None:
        for ref in refs_from_sqs_body(record.body):
            outcome = labeler().label(ref, batch)
            outcomes.append(outcome)
            _log_outcome(outcome)

    with processor(records, record_handler):
        processor.process()
    written = labeler().write_batch_files(outcomes, batch)
    if trial.cache_info().currsize:
        trial().flush(force=True)  # never raises: a batch's pairs are written with the batch
    response = processor.response()
    logger.info(
        "batch done",
        extra={
            "service": SERVICE,
            "batch": batch,
            "messages": len(records),
            "objects": len(refs),
            "failed": len(response["batchItemFailures"]),
            "batch_files": written,
        },
    )
    return response


# ---------------------------------------------------------------- entry point
def _is_sqs(event: dict[str, Any]) -> bool:
    records = event.get("Records")
    return bool(records) and records[0].get("eventSource") == "aws:sqs"


@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    if _is_sqs(event):
        return handle_sqs(event)
    if "httpMethod" in event:
        return handle_api(event)
    raise ValueError("unsupported event: expected an API Gateway REST proxy event or SQS records")
