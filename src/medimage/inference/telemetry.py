"""Metrics and log fields of one prediction, shared by the API and the drop-to-label paths.

Besides latency and payload size, every prediction counts towards its label, its model version and a
bucket of its top-class confidence: a drift in incoming data (more low-confidence answers, a label
suddenly dominating) shows on a dashboard before anyone relabels. The raw confidence is also emitted
as a value, so CloudWatch percentiles of it can be graphed. A prediction routed to a clinician counts as
``NeedsReview`` per dataset and model version, and per dataset beside ``Predictions`` per dataset: the
template's review-rate alarm divides the two. Image bytes are never logged.
"""

from __future__ import annotations

import itertools
import os
from typing import Any

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit, single_metric

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


def _count(metrics: Metrics, name: str, dimensions: dict[str, str]) -> None:
    with single_metric(
        name=name,
        unit=MetricUnit.Count,
        value=1,
        namespace=metrics.namespace,
        default_dimensions=metrics.default_dimensions,
    ) as metric:
        for key, value in dimensions.items():
            metric.add_dimension(key, value)


def record_prediction(metrics: Metrics, result: PredictionResult, source: str) -> None:
    metrics.add_metric(name="LatencyMs", unit=MetricUnit.Milliseconds, value=result.latency_ms)
    metrics.add_metric(name="PayloadBytes", unit=MetricUnit.Bytes, value=result.payload_bytes)
    metrics.add_metric(name="TopConfidence", unit=MetricUnit.NoUnit, value=round(result.confidence, 4))
    _count(metrics, "Predictions", {"dataset": result.dataset, "label": result.label})
    _count(metrics, "Predictions", {"dataset": result.dataset})
    _count(metrics, "PredictionsByModel", {"dataset": result.dataset, "model_version": result.model_version})
    _count(
        metrics,
        "ConfidenceBucket",
        {"dataset": result.dataset, "bucket": confidence_bucket(result.confidence)},
    )
    _count(metrics, "PredictionsBySource", {"source": source})
    if result.needs_review:
        _count(metrics, "NeedsReview", {"dataset": result.dataset, "model_version": result.model_version})
        _count(metrics, "NeedsReview", {"dataset": result.dataset})


def record_rejection(metrics: Metrics, code: str, source: str) -> None:
    _count(metrics, "Rejected", {"source": source, "code": code})
