"""The inference function's metrics as CloudWatch reads them: one EMF document per count, one dimension set
per breakdown, ``service`` in each."""

from __future__ import annotations

import json
from typing import Any

import pytest

from medimage.inference.service import PredictionResult
from medimage.inference.telemetry import make_metrics, record_prediction, record_rejection


def result(confidence: float, needs_review: bool = False) -> PredictionResult:
    return PredictionResult(
        dataset="chestxray2017-binary",
        label="pneumonia",
        probabilities={"normal": round(1 - confidence, 6), "pneumonia": confidence},
        model_version="v3",
        model_sha256="0" * 64,
        latency_ms=2.5,
        payload_bytes=1234,
        confidence=confidence,
        needs_review=needs_review,
        review_reason="low_confidence" if needs_review else None,
    )


def emitted(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if '"_aws"' in line]


def dimension_sets(doc: dict[str, Any]) -> list[set[str]]:
    (directive,) = doc["_aws"]["CloudWatchMetrics"]
    return [set(names) for names in directive["Dimensions"]]


@pytest.fixture
def metrics(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")  # tests/conftest.py turns EMF off
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "inference")
    made = make_metrics()
    yield made
    made.clear_metrics()


def test_a_prediction_is_counted_once_under_every_breakdown(
    metrics: Any, capsys: pytest.CaptureFixture
) -> None:
    # WHEN a confident prediction is recorded twice (a warm container)
    for _ in range(2):
        record_prediction(metrics, result(0.93), "api")
    docs = emitted(capsys.readouterr().out)
    # THEN each is one document counting Predictions once, under each breakdown, all with the service
    assert len(docs) == 2 and docs[0]["Predictions"] == docs[1]["Predictions"] == [1.0]
    assert dimension_sets(docs[0]) == [
        {"service", "dataset"},
        {"service", "dataset", "label"},
        {"service", "dataset", "model_version"},
        {"service", "dataset", "bucket"},
        {"service", "source"},
    ]
    values = {
        key: docs[0][key] for key in ("service", "dataset", "label", "model_version", "bucket", "source")
    }
    assert values == {
        "service": "inference",
        "dataset": "chestxray2017-binary",
        "label": "pneumonia",
        "model_version": "v3",
        "bucket": "0.90-0.95",
        "source": "api",
    }
    # AND nobody was sent to review
    assert not any("NeedsReview" in doc for doc in docs)


def test_a_review_and_a_rejection_are_counted_with_their_own_dimensions(
    metrics: Any, capsys: pytest.CaptureFixture
) -> None:
    record_prediction(metrics, result(0.55, needs_review=True), "s3")
    record_rejection(metrics, "not_an_image", "api")
    docs = emitted(capsys.readouterr().out)
    (review,) = [doc for doc in docs if "NeedsReview" in doc]
    assert dimension_sets(review) == [{"service", "dataset"}, {"service", "dataset", "model_version"}]
    assert review["NeedsReview"] == [1.0] and "Predictions" not in review
    (rejected,) = [doc for doc in docs if "Rejected" in doc]
    assert dimension_sets(rejected) == [{"service", "source", "code"}]
    assert rejected["code"] == "not_an_image" and rejected["Rejected"] == [1.0]
