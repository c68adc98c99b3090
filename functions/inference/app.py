"""Inference Lambda (one container image, one entry point `lambda_handler`).

`lambda_handler` dispatches on the event's shape:
* API Gateway REST proxy events -> `POST /predict`, `GET /health`, `GET /` (the upload page);
* SQS records wrapping S3 `ObjectCreated` events for ``incoming/unlabeled/<dataset>/`` -> drop-to-label,
  answered with partial batch failures.
The handler only parses and shapes; `medimage.inference` holds the logic, `medimage.adapters.model_store`
the S3 access. The model is loaded once per container and follows the production pointer.

A cold start imports only what `POST /predict` needs: the SQS path (batch processing, drop-to-label and
its S3 adapter), the upload page and botocore are imported on their first use, and the X-Ray SDK only when
tracing is on (`medimage.inference.tracing`).
"""

from __future__ import annotations

import contextlib
import json
from functools import cache
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types

from medimage.core.errors import MedimageError
from medimage.inference.api import ApiError, error_body, parse_predict_request
from medimage.inference.cache import LocalModelSource, ModelCache
from medimage.inference.service import InferenceService
from medimage.inference.settings import InferenceSettings
from medimage.inference.telemetry import log_fields, make_metrics, record_prediction, record_rejection
from medimage.inference.tracing import make_tracer

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.batch import BatchProcessor
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
    from aws_lambda_powertools.utilities.typing import LambdaContext

    from medimage.core.objects import ObjectRef
    from medimage.inference.drop_to_label import DropLabeler, LabelOutcome
    from medimage.inference.ports import ModelSource

logger = Logger()
tracer = make_tracer()
metrics = make_metrics()
app = APIGatewayRestResolver()


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
    from medimage.adapters.s3 import S3ObjectStore
    from medimage.inference.drop_to_label import DropLabeler

    return DropLabeler(service(), S3ObjectStore(service().config.data_bucket))


@cache
def batch_processor() -> BatchProcessor:
    from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType

    return BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


def _json(status: int, doc: dict[str, Any]) -> Response:
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=json.dumps(doc))


# ---------------------------------------------------------------- API Gateway
@app.post("/predict")
@tracer.capture_method
def predict() -> Response:
    event = app.current_event
    svc = service()
    request = parse_predict_request(
        event.body,
        event.is_base64_encoded,
        event.headers,
        event.query_string_parameters,
        max_bytes=svc.config.max_request_bytes,
    )
    result = svc.predict(
        request.image, request.dataset, max_bytes=svc.config.max_request_bytes, explain=request.explain
    )
    record_prediction(metrics, result, "api")
    logger.info("prediction", extra=log_fields(result, "api"))
    return _json(200, result.api_body())


@app.get("/health")
def health() -> Response:
    return _json(200, service().health())


@app.get("/")
def index() -> Response:
    from medimage.inference.page import INDEX_HTML

    return Response(status_code=200, content_type="text/html; charset=utf-8", body=INDEX_HTML)


@app.exception_handler(ApiError)
def handle_api_error(exc: ApiError) -> Response:
    record_rejection(metrics, exc.code, "api")
    logger.info("rejected request", extra={"code": exc.code, "status": exc.status, "reason": exc.message})
    return _json(exc.status, exc.body())


@app.exception_handler(MedimageError)
def handle_medimage_error(exc: MedimageError) -> Response:
    return handle_api_error(ApiError.from_error(exc))


@app.exception_handler(Exception)
def handle_unexpected(exc: Exception) -> Response:
    """A fault of ours (the registry unreachable, a bug): logged with its trace, answered as JSON."""
    logger.exception("unexpected error")
    return _json(
        500, error_body("internal", f"internal error ({type(exc).__name__}); see the function's logs")
    )


@app.not_found
def not_found(exc: Exception) -> Response:
    event = app.current_event
    return _json(
        404,
        error_body(
            "not_found", f"no route {event.http_method} {event.path}; try POST /predict, GET /health or GET /"
        ),
    )


# ---------------------------------------------------------------- SQS-wrapped S3 events
def object_refs(record: SQSRecord) -> list[ObjectRef]:
    """The created objects of one SQS message; S3's ``s3:TestEvent`` carries none."""
    from medimage.core.events import refs_from_sqs_body

    return refs_from_sqs_body(record.body)


def _log_outcome(outcome: LabelOutcome) -> None:
    if outcome.result is not None:
        record_prediction(metrics, outcome.result, "s3")
        logger.info("prediction", extra={**log_fields(outcome.result, "s3"), "key": outcome.key})
    elif outcome.status == "quarantined":
        record_rejection(metrics, (outcome.reason or {}).get("code", "rejected"), "s3")
        logger.warning("quarantined", extra={"key": outcome.key, "reason": outcome.reason})
    else:
        logger.info(outcome.status, extra={"key": outcome.key, "dataset": outcome.dataset})


@tracer.capture_method
def handle_sqs(event: dict[str, Any]) -> dict[str, Any]:
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

    from medimage.core.objects import batch_id

    records = event["Records"]
    processor = batch_processor()
    refs: list[ObjectRef] = []
    for raw in records:
        # A malformed message adds nothing here; the record handler fails it (retried, then dead-lettered).
        with contextlib.suppress(MedimageError, ValueError, KeyError, TypeError, AttributeError):
            refs.extend(object_refs(SQSRecord(raw)))
    batch = batch_id(refs)
    outcomes: list[LabelOutcome] = []

    def record_handler(record: SQSRecord) -> None:
        for ref in object_refs(record):
            outcome = labeler().label(ref, batch)
            outcomes.append(outcome)
            _log_outcome(outcome)

    with processor(records, record_handler):
        processor.process()
    written = labeler().write_batch_files(outcomes, batch)
    response = processor.response()
    logger.info(
        "batch done",
        extra={
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


@logger.inject_lambda_context(log_event=False, clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if _is_sqs(event):
        return handle_sqs(event)
    if "httpMethod" in event:
        logger.set_correlation_id((event.get("requestContext") or {}).get("requestId"))
        return app.resolve(event, context)
    raise ValueError("unsupported event: expected an API Gateway REST proxy event or SQS records")
