"""A Distributed Map with an ItemBatcher, run by moto's interpreter as ``local_definition`` leaves it: each
child execution gets one batch (the ItemSelector applied to each item, joined under ``Items`` with the
``BatchInput``), the batch size may come from the Map's input, and the Map's item counts and its failure
tolerance count items, not batches."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from medimage.local.account import ACCOUNT, REGION
from medimage.local.moto_map import (
    batch_map_items,
    local_definition,
    paginated_item_reader,
    tolerate_map_failures,
    write_failed_results,
)
from medimage.local.moto_patches import moto_config

BUCKET = "batch-source"
RESULTS = "batch-results"
KEYS = [f"p/k{i:02d}" for i in range(12)]
FAILING_BATCH_FIRST_KEY = "p/k05"


def definition(batcher: dict[str, Any], results: bool = False) -> str:
    """Lists ``p/``, batches the keys; a batch that starts at k05 fails, every other one passes."""
    return json.dumps(
        {
            "StartAt": "EachBatch",
            "States": {
                "EachBatch": {
                    "Type": "Map",
                    "ItemReader": {
                        "Resource": "arn:aws:states:::s3:listObjectsV2",
                        "Parameters": {"Bucket": BUCKET, "Prefix": "p/"},
                    },
                    "ItemSelector": {"key.$": "$$.Map.Item.Value.Key"},
                    "ItemBatcher": {**batcher, "BatchInput": {"tag.$": "$.tag"}},
                    "ItemProcessor": {
                        "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
                        "StartAt": "First",
                        "States": {
                            "First": {
                                "Type": "Pass",
                                "Parameters": {"first.$": "States.ArrayGetItem($.Items, 0)"},
                                "ResultPath": "$.look",
                                "Next": "Which",
                            },
                            "Which": {
                                "Type": "Choice",
                                "Choices": [
                                    {
                                        "Variable": "$.look.first.key",
                                        "StringEquals": FAILING_BATCH_FIRST_KEY,
                                        "Next": "Broken",
                                    }
                                ],
                                "Default": "Done",
                            },
                            "Broken": {"Type": "Fail", "Error": "BatchBroke", "Cause": "on purpose"},
                            "Done": {
                                "Type": "Pass",
                                "InputPath": "$",
                                "Parameters": {"Items.$": "$.Items", "BatchInput.$": "$.BatchInput"},
                                "End": True,
                            },
                        },
                    },
                    "MaxConcurrency": 2,
                    "ToleratedFailurePercentagePath": "$.tolerated",
                    **(
                        {
                            "ResultWriter": {
                                "Resource": "arn:aws:states:::s3:putObject",
                                "Parameters": {"Bucket": RESULTS, "Prefix": "runs"},
                            }
                        }
                        if results
                        else {}
                    ),
                    "End": True,
                }
            },
        }
    )


@pytest.fixture
def sfn() -> Iterator[Any]:
    with mock_aws(config=moto_config()):
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET)
        for key in KEYS:
            s3.put_object(Bucket=BUCKET, Key=key, Body=b"x")
        s3.create_bucket(Bucket=RESULTS)
        with paginated_item_reader(), batch_map_items(), write_failed_results(), tolerate_map_failures():
            yield boto3.client("stepfunctions", region_name=REGION)


def run(
    sfn: Any, name: str, batcher: dict[str, Any], execution_input: dict[str, Any], results: bool = False
) -> dict[str, Any]:
    arn = sfn.create_state_machine(
        name=name,
        definition=local_definition(definition(batcher, results), name),
        roleArn=f"arn:aws:iam::{ACCOUNT}:role/batches",
    )["stateMachineArn"]
    execution = sfn.start_execution(stateMachineArn=arn, input=json.dumps(execution_input))["executionArn"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        described = sfn.describe_execution(executionArn=execution)
        if described["status"] != "RUNNING":
            return described
        time.sleep(0.05)
    raise AssertionError("the execution did not end within 60 s")


def batch(keys: list[str]) -> dict[str, Any]:
    return {"Items": [{"key": k} for k in keys], "BatchInput": {"tag": "t"}}


def test_each_child_gets_one_batch_sized_by_the_path_and_a_failed_batch_fails_its_items(sfn: Any) -> None:
    described = run(
        sfn, "by-path", {"MaxItemsPerBatchPath": "$.size"}, {"size": 5, "tag": "t", "tolerated": 50}
    )
    assert described["status"] == "SUCCEEDED", described
    outputs = json.loads(described["output"])
    # Batches k00-k04, k05-k09 (fails: 5 of 12 items, within 50 %), k10-k11.
    assert [o for o in outputs if o is not None] == [batch(KEYS[0:5]), batch(KEYS[10:12])]
    assert len(outputs) == 3


def test_a_fixed_batch_size_and_a_tolerance_counted_in_items(sfn: Any) -> None:
    described = run(sfn, "fixed", {"MaxItemsPerBatch": 5}, {"tag": "t", "tolerated": 40})
    assert described["status"] == "FAILED", described
    assert described["error"] == "States.ExceedToleratedFailureThreshold"
    assert described["cause"] == "5 of 12 items failed; the Map tolerates 40 %"


def test_a_batch_larger_than_the_listing_is_one_child(sfn: Any) -> None:
    described = run(sfn, "one", {"MaxItemsPerBatch": 200}, {"tag": "t", "tolerated": 0})
    assert described["status"] == "SUCCEEDED", described
    assert json.loads(described["output"]) == [batch(KEYS)]


def test_the_result_writer_lists_a_failed_batch_with_its_input_and_error(sfn: Any) -> None:
    described = run(sfn, "written", {"MaxItemsPerBatch": 5}, {"tag": "t", "tolerated": 50}, results=True)
    assert described["status"] == "SUCCEEDED", described
    details = json.loads(described["output"])["ResultWriterDetails"]
    s3 = boto3.client("s3", region_name=REGION)
    manifest = json.loads(s3.get_object(Bucket=details["Bucket"], Key=details["Key"])["Body"].read())
    (failed_file,) = manifest["ResultFiles"]["FAILED"]
    assert failed_file["Key"] == details["Key"].replace("manifest.json", "FAILED_0.json")
    (execution,) = json.loads(s3.get_object(Bucket=RESULTS, Key=failed_file["Key"])["Body"].read())
    assert execution["Status"] == "FAILED"
    assert (execution["Error"], execution["Cause"]) == ("BatchBroke", "on purpose")
    assert json.loads(execution["Input"]) == batch(KEYS[5:10])


def test_without_failures_the_manifest_lists_no_failed_file(sfn: Any) -> None:
    described = run(sfn, "clean", {"MaxItemsPerBatch": 3}, {"tag": "t", "tolerated": 0}, results=True)
    assert described["status"] == "SUCCEEDED", described
    details = json.loads(described["output"])["ResultWriterDetails"]
    s3 = boto3.client("s3", region_name=REGION)
    manifest = json.loads(s3.get_object(Bucket=details["Bucket"], Key=details["Key"])["Body"].read())
    assert manifest["ResultFiles"]["FAILED"] == []
