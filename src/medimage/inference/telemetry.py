"""What one prediction or refusal tells CloudWatch: a single structured log line, from which the template's
metric filters on the inference log group make every count and value.

The function logs with the standard ``logging`` module. Lambda's JSON log format (``LoggingConfig.LogFormat:
JSON``) writes each record as one JSON event with its ``extra`` fields and the request id, and the metric
filters read those fields (namespace ``medimage``, ``service`` in every dimension set):

- ``Predictions`` per dataset; per dataset and label, model version, or bucket of the top-class confidence;
  per source (api, s3): a drift in incoming data (more low-confidence answers, a label suddenly dominating)
  shows on a dashboard before anyone relabels;
- ``NeedsReview`` per dataset, and per dataset and model version: the review-rate alarm divides it by
  ``Predictions`` per dataset;
- ``Rejected`` per source and code (source ``stow`` for STOW-RS instances); ``PacsPushFailed`` per dataset
  and code, for SRs the PACS did not take; ``LatencyMs``, ``PayloadBytes`` and ``TopConfidence`` as values, so
  CloudWatch percentiles of them can be graphed; ``InitDurationMs`` from Lambda's own ``platform.report``.

Not Powertools' Logger and Metrics, as the other functions use: importing Powertools is about 15 ms of this
function's 0.12-0.25 s cold start, and a prediction wrote three EMF documents besides its log line
(``docs/decisions.md``). Image bytes are never logged.
"""

from __future__ import annotations

import itertools
from typing import Any

from medimage.inference.service import PredictionResult

SERVICE = "inference"  # the function's logger and every metric's ``service`` dimension
NAMESPACE = "medimage"  # the metric filters' namespace, which the template's alarms read
PREDICTION = "prediction"  # the message of a prediction's line, which the metric filters select
REJECTED = "rejected"  # the message of a refused request's or quarantined upload's line
PACS_PUSHED = "pacs_pushed"  # an SR the PACS took
PACS_PUSH_FAILED = "pacs_push_failed"  # an SR it refused or never answered for: ``PacsPushFailed``
CONFIDENCE_EDGES = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)


def confidence_bucket(p: float) -> str:
    """The bucket of a top-class probability, e.g. ``0.90-0.95``; ``<0.50`` and ``>=0.99`` at the ends."""
    if p < CONFIDENCE_EDGES[0]:
        return f"<{CONFIDENCE_EDGES[0]:.2f}"
    for low, high in itertools.pairwise(CONFIDENCE_EDGES):
        if p < high:
            return f"{low:.2f}-{high:.2f}"
    return f">={CONFIDENCE_EDGES[-1]:.2f}"


def prediction_fields(result: PredictionResult, source: str) -> dict[str, Any]:
    """The fields of a prediction's line: every dimension and value its metric filters read."""
    return {
        "service": SERVICE,
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


def rejection_fields(code: str, source: str, **details: Any) -> dict[str, Any]:
    """The fields of a refusal's line: ``Rejected`` counts it per source and code."""
    return {"service": SERVICE, "source": source, "code": code, **details}
