"""The inference function's metrics as CloudWatch makes them: the template's metric filters on its log group
read the JSON lines Lambda writes of its log records. Here: the filters select and read only what the
function's real lines carry, and they make every breakdown the dashboards and the review-rate alarm use."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from medimage.checkout import project_file
from medimage.inference.service import PredictionResult
from medimage.inference.telemetry import (
    NAMESPACE,
    PREDICTION,
    REJECTED,
    SERVICE,
    confidence_bucket,
    prediction_fields,
    rejection_fields,
)
from medimage.local.functions import load_handler_module
from medimage.local.log_format import apply_json_log_format
from medimage.template_file import Intrinsic, load_template, resources_of_type
from tests.inference.conftest import api_event, call_api, jpeg_bytes, json_lines, publish

TEMPLATE = load_template(project_file("template.yaml"))
FILTERS = {k: r["Properties"] for k, r in resources_of_type(TEMPLATE, "AWS::Logs::MetricFilter").items()}
SELECTOR = re.compile(r"\$\.([A-Za-z_.]+)")


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


def transformation(props: dict[str, Any]) -> dict[str, Any]:
    (only,) = props["MetricTransformations"]  # CloudWatch takes one per filter
    return only


def breakdowns() -> Counter[tuple[str, frozenset[str]]]:
    """(metric, dimension names) of every filter."""
    return Counter(
        (t["MetricName"], frozenset(d["Key"] for d in t.get("Dimensions", [])))
        for t in map(transformation, FILTERS.values())
    )


def fields_read(props: dict[str, Any]) -> set[str]:
    """Every ``$.field`` a filter selects on, counts or names a dimension with."""
    t = transformation(props)
    texts = [props["FilterPattern"], str(t["MetricValue"]), *(d["Value"] for d in t.get("Dimensions", []))]
    return {field for text in texts for field in SELECTOR.findall(text)}


def selected_message(props: dict[str, Any]) -> str | None:
    found = re.search(r'\$\.message = "([^"]+)"', props["FilterPattern"])
    return found.group(1) if found else None


def test_every_breakdown_is_made_once_in_the_namespace_with_the_service() -> None:
    S = frozenset
    assert breakdowns() == Counter(
        {
            ("Predictions", S({"service", "dataset"})): 1,
            ("Predictions", S({"service", "dataset", "label"})): 1,
            ("Predictions", S({"service", "dataset", "model_version"})): 1,
            ("Predictions", S({"service", "dataset", "bucket"})): 1,
            ("Predictions", S({"service", "source"})): 1,
            ("NeedsReview", S({"service", "dataset"})): 1,
            ("NeedsReview", S({"service", "dataset", "model_version"})): 1,
            ("Rejected", S({"service", "source", "code"})): 1,
            ("PacsPushFailed", S({"service", "dataset", "code"})): 1,
            ("LatencyMs", S({"service"})): 1,
            ("PayloadBytes", S({"service"})): 1,
            ("TopConfidence", S({"service"})): 1,
            ("InitDurationMs", S()): 1,
        }
    )
    for props in FILTERS.values():
        assert props["LogGroupName"] == Intrinsic("Ref", "InferenceLogGroup")
        assert transformation(props)["MetricNamespace"] == NAMESPACE
        assert len(transformation(props).get("Dimensions", [])) <= 3  # CloudWatch's limit


def test_the_function_writes_json_lines_for_the_filters_to_read() -> None:
    logging_config = TEMPLATE["Resources"]["InferenceFunction"]["Properties"]["LoggingConfig"]
    assert logging_config == {
        "LogGroup": Intrinsic("Ref", "InferenceLogGroup"),
        "LogFormat": "JSON",
        "ApplicationLogLevel": "INFO",
        "SystemLogLevel": "INFO",  # platform.report, which InitDurationMs reads, is an INFO system line
    }


@pytest.mark.parametrize("confidence", [0.42, 0.55, 0.93, 0.999])
def test_a_prediction_line_carries_every_field_its_filters_read(confidence: float) -> None:
    line = {"message": PREDICTION, **prediction_fields(result(confidence, confidence < 0.6), "api")}
    for name, props in FILTERS.items():
        if selected_message(props) != PREDICTION:
            continue
        missing = {f for f in fields_read(props) if f not in line}
        assert not missing, (name, missing)
    assert line["service"] == SERVICE and line["confidence_bucket"] == confidence_bucket(confidence)
    assert isinstance(line["needs_review"], bool)  # `IS TRUE` matches a JSON boolean only
    assert isinstance(line["latency_ms"], float) and isinstance(line["payload_bytes"], int)


def test_a_refusal_line_carries_what_rejected_reads() -> None:
    line = {"message": REJECTED, **rejection_fields("truncated", "s3", key="incoming/unlabeled/x.jpeg")}
    (props,) = [p for p in FILTERS.values() if selected_message(p) == REJECTED]
    assert fields_read(props) <= set(line) and line["code"] == "truncated"


def test_the_review_count_selects_routed_answers_only() -> None:
    patterns = {
        transformation(p)["MetricName"]: p["FilterPattern"]
        for p in FILTERS.values()
        if selected_message(p) == PREDICTION
    }
    assert "$.needs_review IS TRUE" in patterns["NeedsReview"]
    assert "needs_review" not in patterns["Predictions"]


def test_the_handler_writes_one_prediction_line_and_no_image_bytes(
    s3: Any, model_v1: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN the handler under Lambda's JSON log format, with a threshold that routes its answer to review
    monkeypatch.setenv("REVIEW_THRESHOLD", "0.99")
    publish(s3, model_v1, "v7")
    handler = load_handler_module()
    apply_json_log_format(handler, "INFO")
    capsys.readouterr()
    # WHEN it answers one upload and refuses a broken one
    event = api_event(jpeg_bytes())
    call_api(handler, event)
    call_api(handler, api_event(b"\xff\xd8\xff\xe0 not really a JPEG"))
    out = capsys.readouterr().out
    lines = json_lines(out)
    # THEN one prediction line holds every field its filters read, with the values of this answer
    (prediction,) = [line for line in lines if line["message"] == PREDICTION]
    for props in FILTERS.values():
        if selected_message(props) == PREDICTION:
            assert fields_read(props) <= set(prediction)
    assert (prediction["dataset"], prediction["model_version"], prediction["source"]) == (
        "chestxray2017",
        "v7",
        "api",
    )
    assert prediction["needs_review"] is True and prediction["service"] == SERVICE
    assert prediction["correlation_id"] == event["requestContext"]["requestId"]
    # AND the refusal is a `rejected` line with its code; the image's bytes are in no line
    (refusal,) = [line for line in lines if line["message"] == REJECTED]
    assert refusal["code"] == "truncated" and refusal["source"] == "api"
    assert event["body"][:40] not in out
