"""The inference part of template.yaml agrees with the code (binary media types, events, prefixes)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from medimage.inference.api import BINARY_MEDIA_TYPES
from medimage.inference.settings import parse_review_threshold
from medimage.inference.telemetry import NAMESPACE, SERVICE

TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"


class _CfnLoader(yaml.SafeLoader):
    """Reads CloudFormation short-form tags (!Ref, !Sub, ...) as plain values."""


def _tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return {suffix: loader.construct_scalar(node)}
    if isinstance(node, yaml.SequenceNode):
        return {suffix: loader.construct_sequence(node, deep=True)}
    return {suffix: loader.construct_mapping(node, deep=True)}


_CfnLoader.add_multi_constructor("!", _tag)
TEMPLATE_DOC = yaml.load(TEMPLATE.read_text(encoding="utf-8"), Loader=_CfnLoader)
RESOURCES = TEMPLATE_DOC["Resources"]
PARAMETERS = TEMPLATE_DOC["Parameters"]


def test_api_binary_media_types_are_the_ones_the_code_expects():
    api = RESOURCES["InferenceApi"]["Properties"]
    assert [t.replace("~1", "/") for t in api["BinaryMediaTypes"]] == list(BINARY_MEDIA_TYPES)
    stow = {
        "/studies",
        "/studies/{study}",
        "/datasets/{dataset}/studies",
        "/datasets/{dataset}/studies/{study}",
    }
    review = {("get", "/review"), ("get", "/review/item"), ("post", "/review/label")}
    paths = api["DefinitionBody"]["paths"]
    assert set(paths) == {"/predict", "/health", "/", *stow, *(path for _, path in review)}
    for path in stow:  # STOW-RS has the auth of /predict
        assert paths[path]["post"]["security"] == paths["/predict"]["post"]["security"]
    for verb, path in review:  # so has the review worklist: its caller is the reviewer
        assert set(paths[path]) == {verb}
        assert paths[path][verb]["security"] == paths["/predict"]["post"]["security"]


def test_function_is_one_image_with_one_entry_point():
    props = RESOURCES["InferenceFunction"]["Properties"]
    meta = RESOURCES["InferenceFunction"]["Metadata"]
    assert props["PackageType"] == "Image" and props["ImageConfig"]["Command"] == ["app.lambda_handler"]
    assert (TEMPLATE.parent / meta["Dockerfile"]).is_file()
    mapping = RESOURCES["InferenceUnlabeledMapping"]["Properties"]
    assert "InferenceFunction" in str(mapping["FunctionName"])
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]


def test_policies_are_scoped_to_prefixes():
    statements = RESOURCES["InferenceFunction"]["Properties"]["Policies"][0]["Statement"]
    s3 = {s["Sid"]: s for s in statements if "s3:" in str(s.get("Action")) and s["Action"] != "s3:ListBucket"}
    resources = {sid: s["Resource"]["Sub"].split("}/", 1)[1] for sid, s in s3.items()}
    assert resources == {
        "ReadModelRegistry": "models/*",
        "ReadAndMoveUnlabeled": "incoming/unlabeled/*",
        "StoreStowInstances": "incoming/unlabeled/*",
        "WritePredictions": "predictions/*",
        "WritePacsFailures": "pacs/failed/*",
        "WriteQuarantine": "quarantine/*",
        "WriteReviewQueue": "review/*",
        "WorkReviewQueue": "review/*",
        "FileReviewedImages": "incoming/labeled/*",
        "RecordTrialPairs": "trials/*",
    }
    assert s3["WriteReviewQueue"]["Action"] == "s3:PutObject"  # drop-to-label writes its copies
    # The worklist reads and clears queued items and files them as training data; never deletes one there.
    assert s3["WorkReviewQueue"]["Action"] == ["s3:GetObject", "s3:DeleteObject"]
    assert s3["FileReviewedImages"]["Action"] == ["s3:GetObject", "s3:PutObject"]
    assert s3["RecordTrialPairs"]["Action"] == "s3:PutObject"  # the pairs: written, never read back
    assert "s3:PutObject" not in str(s3["ReadModelRegistry"]["Action"])
    assert s3["StoreStowInstances"]["Action"] == s3["WritePacsFailures"]["Action"] == "s3:PutObject"


def test_the_pacs_secret_is_read_only_when_configured_and_only_that_one():
    statements = RESOURCES["InferenceFunction"]["Properties"]["Policies"][0]["Statement"]
    [conditional] = [s for s in statements if "If" in s]
    condition, granted, otherwise = conditional["If"]
    assert condition == "HasPacsSecret" and otherwise == {"Ref": "AWS::NoValue"}
    assert granted["Action"] == "secretsmanager:GetSecretValue"
    assert granted["Resource"] == {"Ref": "PacsCredentialsSecretArn"}
    env = RESOURCES["InferenceFunction"]["Properties"]["Environment"]["Variables"]
    assert env["PACS_STOW_URL"] == {"Ref": "PacsStowUrl"}
    assert env["PACS_SECRET_ARN"] == {"Ref": "PacsCredentialsSecretArn"}


def test_bucket_notifies_the_inference_queue_for_unlabeled_uploads():
    bucket = RESOURCES["DataBucket"]
    entries = bucket["Properties"]["NotificationConfiguration"]["QueueConfigurations"]
    [entry] = [e for e in entries if e["Queue"] == {"GetAtt": "InferenceQueue.Arn"}]
    assert entry["Filter"]["S3Key"]["Rules"] == [{"Name": "prefix", "Value": "incoming/unlabeled/"}]
    assert "InferenceQueuePolicy" in bucket["DependsOn"]
    queue = RESOURCES["InferenceQueue"]["Properties"]
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {"GetAtt": "InferenceDeadLetterQueue.Arn"}


@pytest.mark.parametrize("value", ["", "0", "0.9", "0.875", "1", "1.0", "1.5", "-0.1", "0.9x", "high", ".9"])
def test_review_threshold_parameter_takes_what_the_function_takes(value):
    props = RESOURCES["InferenceFunction"]["Properties"]
    assert props["Environment"]["Variables"]["REVIEW_THRESHOLD"] == {"Ref": "ReviewThreshold"}
    parameter = PARAMETERS["ReviewThreshold"]
    assert parameter["Default"] == ""  # model.json's threshold unless a deployment says otherwise
    allowed = re.fullmatch(parameter["AllowedPattern"], value) is not None
    try:
        parse_review_threshold(value)
        parsed = True
    except ValueError:
        parsed = False
    assert allowed <= parsed  # nothing CloudFormation lets through fails the function at start
    if value in ("", "0", "0.9", "1"):
        assert allowed


def test_review_rate_alarm_divides_the_counts_the_function_emits():
    alarm = RESOURCES["InferenceReviewRateAlarm"]["Properties"]
    metrics = {m["Id"]: m for m in alarm["Metrics"]}
    [returned] = [m for m in alarm["Metrics"] if m.get("ReturnData", True)]
    assert "FILL(review, 0) / predictions" in returned["Expression"]
    filters = [r["Properties"] for r in RESOURCES.values() if r["Type"] == "AWS::Logs::MetricFilter"]
    for metric_id, name in (("review", "NeedsReview"), ("predictions", "Predictions")):
        metric = metrics[metric_id]["MetricStat"]["Metric"]
        assert metric["Namespace"] == NAMESPACE and metric["MetricName"] == name
        assert metric["Dimensions"] == [
            {"Name": "dataset", "Value": {"Ref": "InferenceDefaultDataset"}},
            {"Name": "service", "Value": SERVICE},
        ]
        # a metric filter makes exactly this metric: the name, in the namespace, with these dimensions
        made = [
            t
            for f in filters
            for t in f["MetricTransformations"]
            if t["MetricName"] == name
            and {d["Key"] for d in t.get("Dimensions", [])} == {"dataset", "service"}
        ]
        assert [t["MetricNamespace"] for t in made] == [NAMESPACE]
        assert metrics[metric_id]["MetricStat"]["Stat"] == "Sum"
    assert alarm["Threshold"] == {"Ref": "ReviewRateAlarmThreshold"}
    assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
    assert alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}]
