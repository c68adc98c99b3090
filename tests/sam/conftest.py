"""Fixtures of the `sam local invoke` tests. They run only under `make test-sam` (scripts/test-sam.sh sets
MEDIMAGE_TEST_SAM=1 after starting Docker and building the Lambda base image); `make test` skips them."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from medimage.local.account import ACCOUNT, CREDENTIALS, REGION

collect_ignore_glob = [] if os.environ.get("MEDIMAGE_TEST_SAM") == "1" else ["test_*.py"]

sys.path.insert(0, str(Path(__file__).resolve().parent))

from samdata import BUCKET, TABLE, XRAYS, xray_files  # noqa: E402
from samlocal import REPO, SamLocal, function_env, moto_server, sam_build  # noqa: E402


@pytest.fixture(scope="session")
def raw_template() -> dict[str, Any]:
    from cfnlint.decode import decode

    template, matches = decode(str(REPO / "template.yaml"))
    assert not matches
    return template


@pytest.fixture(scope="session")
def built_template() -> Path:
    return sam_build()


@pytest.fixture(scope="session")
def aws(raw_template) -> Iterator[dict[str, Any]]:
    """moto's server with the bucket, catalog table and a stand-in training state machine; boto3 clients
    for this process, and the names the functions get."""
    import boto3

    with moto_server(buckets=(BUCKET,)) as server:
        kw = {
            "endpoint_url": server.host_endpoint,
            "region_name": REGION,
            "aws_access_key_id": CREDENTIALS["AWS_ACCESS_KEY_ID"],
            "aws_secret_access_key": CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        }
        s3, ddb, sfn, sqs = (
            boto3.client("s3", **kw),
            boto3.client("dynamodb", **kw),
            boto3.client("stepfunctions", **kw),
            boto3.client("sqs", **kw),
        )
        s3.create_bucket(Bucket=BUCKET)
        table = raw_template["Resources"]["CatalogTable"]["Properties"]
        ddb.create_table(
            TableName=TABLE,
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=table["AttributeDefinitions"],
            KeySchema=table["KeySchema"],
        )
        machine = sfn.create_state_machine(
            name="medimage-training",
            definition=json.dumps({"StartAt": "Train", "States": {"Train": {"Type": "Pass", "End": True}}}),
            roleArn=f"arn:aws:iam::{ACCOUNT}:role/medimage-training",
        )["stateMachineArn"]
        # The queue split checks for annotation still in progress (empty here: no notifications).
        annotate_queue = sqs.create_queue(QueueName="medimage-annotate")["QueueUrl"]
        names = {
            "DataBucket": BUCKET,
            "CatalogTable": TABLE,
            "TrainingStateMachine": machine,
            "AnnotateQueue": annotate_queue,
        }
        yield {
            "server": server,
            "s3": s3,
            "dynamodb": ddb,
            "sfn": sfn,
            "names": names,
            "state_machine": machine,
        }


@pytest.fixture(scope="session")
def sam(built_template, aws, raw_template) -> Iterator[SamLocal]:
    extra = {
        "AWS_ENDPOINT_URL": aws["server"].container_endpoint,
        "POWERTOOLS_TRACE_DISABLED": "true",
        "AWS_EC2_METADATA_DISABLED": "true",
        "MIN_NEW_IMAGES": "1",
    }
    image_functions = {
        name
        for name, res in raw_template["Resources"].items()
        if res["Type"] == "AWS::Serverless::Function" and res["Properties"].get("PackageType") == "Image"
    }
    runner = SamLocal(
        built_template,
        aws["server"].network,
        function_env(raw_template, aws["names"], extra),
        image_functions,
    )
    yield runner
    print("\nsam local invoke seconds per function:", json.dumps(runner.timings))


@pytest.fixture(scope="session")
def real_xray() -> bytes:
    files = xray_files()
    if not files:
        pytest.skip(f"no real X-rays at {XRAYS} (set MEDIMAGE_SHARED_DATA)")
    return files[0].read_bytes()
