"""Metrics and log fields of one prediction, shared by the API and the drop-to-label paths.

Besides latency and payload size, every prediction counts as ``Predictions`` per dataset, and per dataset
and label, model version and bucket of its top-class confidence, and per source (api, s3): a drift in
incoming data (more low-confidence answers, a label suddenly dominating) shows on a dashboard before anyone
relabels. The raw confidence is also emitted as a value, so CloudWatch percentiles of it can be graphed. A
prediction routed to a clinician counts as ``NeedsReview`` per dataset, and per dataset and model version:
the template's review-rate alarm divides it by ``Predictions`` per dataset. Every dimension set carries
``service``. Image bytes are never logged.

A count goes out as one EMF document with one dimension set per breakdown (CloudWatch files the value under
each set), so a prediction writes one count line, not one per breakdown: the flushes were the largest part
of the handler's own time per request.
"""

from __future__ import annotations

import itertools
import os
from functools import cache
from typing import Any

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

from medimage.inference.service import PredictionResult

CONFIDENCE_EDGES = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)
DEFAULT_NAMESPACE = "medimage"  # the template's POWERTOOLS_METRICS_NAMESPACE


def make_metrics() -> Metrics:
    """Powertools Metrics in the namespace the template sets, ``medimage`` where nothing sets one (a
    metric flush without a namespace fails the invocation)."""
    return Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or DEFAULT_NAMESPACE)


def confidence_bucket(p: float) -> str:
    """The bucket of a top-class probability, e.g. ``0.90-0.95``; ``<0.50`` and ``>=0.99`` at the ends."""
    if p < CONFIDENCE_EDGES[0]:
        return f"<{CONFIDENCE_EDGES[0]:.2f}"
    for low, high in itertools.pairwise(CONFIDENCE_EDGES):
        if p < high:
            return f"{low:.2f}-{high:.2f}"
    return f">={CONFIDENCE_EDGES[-1]:.2f}"


def log_fields(result: PredictionResult, source: str) -> dict[str, Any]:
    return {
        "source": source,
        "dataset": result.dataset,
        "label": result.label,
        "confidence": round(result.confidence, 4),
        "confidence_bucket": confidence_bucket(result.confidence),
        "needs_review": result.needs_review,
        "review_reason": result.review_reason,
        "model_version": result.model_version,
        "latency_ms": result.latency_ms,
        "payload_bytes": result.payload_bytes,
    }


@cache
def _counter(namespace: str) -> EphemeralMetrics:
    """Made once per container: a metrics object of its own (the function's `Metrics` gathers the values
    flushed at the end of the invocation), with ``service`` in every dimension set."""
    counter = EphemeralMetrics(namespace=namespace)
    if counter.service:
        counter.set_default_dimensions(service=counter.service)
    return counter


def _count(metrics: Metrics, name: str, dimension_sets: list[dict[str, str]]) -> None:
    """Count ``name`` once under each of ``dimension_sets``, in one EMF document."""
    counter = _counter(str(metrics.namespace))
    counter.clear_metrics()  # a flush with metrics disabled (tests) keeps what it was given
    counter.add_metric(name=name, unit=MetricUnit.Count, value=1)
    first, *others = dimension_sets
    for key, value in first.items():
        counter.add_dimension(key, value)
    for dimensions in others:
        counter.add_dimensions(**dimensions)
    counter.flush_metrics()


def record_prediction(metrics: Metrics, result: PredictionResult, source: str) -> None:
    metrics.add_metric(name="LatencyMs", unit=MetricUnit.Milliseconds, value=result.latency_ms)
    metrics.add_metric(name="PayloadBytes", unit=MetricUnit.Bytes, value=result.payload_bytes)
    metrics.add_metric(name="TopConfidence", unit=MetricUnit.NoUnit, value=round(result.confidence, 4))
    dataset, version = result.dataset, result.model_version
    _count(
        metrics,
        "Predictions",
        [
            {"dataset": dataset},
            {"dataset": dataset, "label": result.label},
            {"dataset": dataset, "model_version": version},
            {"dataset": dataset, "bucket": confidence_bucket(result.confidence)},
            {"source": source},
        ],
    )
    if result.needs_review:
        _count(metrics, "NeedsReview", [{"dataset": dataset}, {"dataset": dataset, "model_version": version}])


def record_rejection(metrics: Metrics, code: str, source: str) -> None:
    _count(metrics, "Rejected", [{"source": source, "code": code}])
