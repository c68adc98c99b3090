"""The inference part of template.yaml agrees with the code (binary media types, events, prefixes)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from medimage.inference.api import BINARY_MEDIA_TYPES

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
RESOURCES = yaml.load(TEMPLATE.read_text(encoding="utf-8"), Loader=_CfnLoader)["Resources"]


def test_api_binary_media_types_are_the_ones_the_code_expects():
    api = RESOURCES["InferenceApi"]["Properties"]
    assert [t.replace("~1", "/") for t in api["BinaryMediaTypes"]] == list(BINARY_MEDIA_TYPES)
    assert set(api["DefinitionBody"]["paths"]) == {"/predict", "/health", "/"}


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
    s3 = {s["Sid"]: s for s in statements if "s3:" in str(s["Action"]) and s["Action"] != "s3:ListBucket"}
    resources = {sid: s["Resource"]["Sub"].split("}/", 1)[1] for sid, s in s3.items()}
    assert resources == {
        "ReadModelRegistry": "models/*",
        "ReadAndMoveUnlabeled": "incoming/unlabeled/*",
        "WritePredictions": "predictions/*",
        "WriteQuarantine": "quarantine/*",
    }
    assert "s3:PutObject" not in str(s3["ReadModelRegistry"]["Action"])


def test_bucket_notifies_the_inference_queue_for_unlabeled_uploads():
    bucket = RESOURCES["DataBucket"]
    entries = bucket["Properties"]["NotificationConfiguration"]["QueueConfigurations"]
    [entry] = [e for e in entries if e["Queue"] == {"GetAtt": "InferenceQueue.Arn"}]
    assert entry["Filter"]["S3Key"]["Rules"] == [{"Name": "prefix", "Value": "incoming/unlabeled/"}]
    assert "InferenceQueuePolicy" in bucket["DependsOn"]
    queue = RESOURCES["InferenceQueue"]["Properties"]
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {"GetAtt": "InferenceDeadLetterQueue.Arn"}
