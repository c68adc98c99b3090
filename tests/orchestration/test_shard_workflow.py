"""The training workflow with and without a shard plan, on moto's interpreter with the deployed ASL file:
a sharded version packs every shard (a Distributed Map calling the real pack handler) and trains from
FastFile S3Prefix channels of its shards; any other version keeps its ManifestFile channels; a shard that
cannot be packed ends the run through the workflow's failure path, before any training job."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import botocore.session
import pytest
from botocore.validate import ParamValidator

from medimage.core import training_job as job
from medimage.local.account import ACCOUNT, REGION
from medimage.local.environment import moto_config
from medimage.local.functions import template_functions
from medimage.local.moto_patches import local_training_workflow
from medimage.local.sagemaker import LocalSageMaker
from medimage.local.template import Resolver, definition_from_template
from medimage.template_file import load_template
from tests.orchestration.shard_helpers import (
    DATASET,
    csv_rows,
    manifest_prefix,
    put_sharded_version,
    shard_records,
)
from tests.orchestration.workflow_helpers import ExecutionResult, create_state_machine, run_execution

REPO = Path(__file__).resolve().parents[2]
BUCKET = "medimage-shard-workflow"
GATE = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:GateFunction"
PROMOTE = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:PromoteFunction"


@dataclass(frozen=True)
class Outcome:
    ok: bool
    seconds: float = 0.0
    metrics: dict[str, float] = field(default_factory=dict)
    failure_reason: str | None = None


@dataclass
class ChannelRecorder:
    """Stands in for train.py: keeps, per job, each channel's files (name -> bytes) as it sees them."""

    seen: list[dict[str, dict[str, bytes]]] = field(default_factory=list)

    def __call__(
        self, channels: dict[str, Path], hyperparameters: Any, model_dir: Path, out: Path
    ) -> Outcome:
        self.seen.append(
            {
                name: {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}
                for name, root in channels.items()
            }
        )
        model_dir.mkdir(parents=True, exist_ok=True)
        (model_dir / "model.txt").write_text("a model")
        return Outcome(ok=True)


@dataclass
class RecordingSageMaker(LocalSageMaker):
    requests: list[dict[str, Any]] = field(default_factory=list)

    def create_training_job(self, request: dict[str, Any]) -> dict[str, Any]:
        self.requests.append(json.loads(json.dumps(request)))
        return super().create_training_job(request)


@dataclass
class Workflow:
    s3: Any
    sfn: Any
    arn: str
    sagemaker: RecordingSageMaker
    recorder: ChannelRecorder
    packed: list[dict[str, Any]]
    template: dict[str, Any]

    def run(self, version: str, **extra: Any) -> ExecutionResult:
        payload = {
            "dataset": DATASET,
            "preset": DATASET,
            "manifest_version": version,
            "bucket": BUCKET,
            "manifest_prefix": manifest_prefix(version),
            **extra,
        }
        return run_execution(self.sfn, self.arn, payload, timeout_s=120)


@pytest.fixture(scope="module")
def workflow() -> Iterator[Workflow]:
    from moto import mock_aws

    from medimage.adapters.aws import reset_clients

    with mock_aws(config=moto_config()):
        reset_clients()
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET)
        topic = boto3.client("sns", region_name=REGION).create_topic(Name="training-failures")["TopicArn"]
        template = load_template(REPO / "template.yaml")
        refs = {"DataBucket": BUCKET, "TrainingFailureTopic": topic, "CatalogTable": "medimage-catalog"}
        attrs = {
            ("SageMakerTrainingRole", "Arn"): f"arn:aws:iam::{ACCOUNT}:role/medimage-sagemaker",
            ("GateFunction", "Arn"): GATE,
            ("PromoteFunction", "Arn"): PROMOTE,
        }
        resolver = Resolver(template, refs, attrs, {}, REGION, ACCOUNT)
        (pack,) = template_functions(REPO, template, resolver, ["PackFunction"]).values()
        packed: list[dict[str, Any]] = []

        def pack_invoker(event: dict[str, Any]) -> Any:
            result = pack.invoke(event)
            packed.append(result)
            return result

        invokers = {
            "PackFunction": pack_invoker,
            "GateFunction": lambda e: {"passed": True, "version": e["training"]["TrainingJobName"]},
            "PromoteFunction": lambda e: {"promoted": True},
        }
        recorder = ChannelRecorder()
        sagemaker = RecordingSageMaker(trainer=recorder, optional_channels=frozenset({"pretrained"}))
        sfn = boto3.client("stepfunctions", region_name=REGION)
        with local_training_workflow(invokers, sagemaker, retry_delay_scale=0.01):
            arn = create_state_machine(sfn, definition_from_template(REPO, template, resolver), "training")
            yield Workflow(s3, sfn, arn, sagemaker, recorder, packed, template)
        reset_clients()


def expected_request(workflow: Workflow, sent: dict[str, Any], version: str, shards: bool) -> dict[str, Any]:
    parameters = workflow.template["Parameters"]
    return job.create_training_job_request(
        job_name=sent["TrainingJobName"],
        role_arn=f"arn:aws:iam::{ACCOUNT}:role/medimage-sagemaker",
        image_uri=workflow.template["Mappings"]["TrainingImages"][REGION]["Cpu"],
        instance_type=parameters["TrainingInstanceType"]["Default"],
        bucket=BUCKET,
        dataset=DATASET,
        manifest_prefix=manifest_prefix(version),
        hyperparameters=job.hyperparameters(
            DATASET, DATASET, version, f"s3://{BUCKET}/{parameters['TrainingSourceKey']['Default']}", REGION
        ),
        shards=shards,
    )


def sagemaker_validation_errors(request: dict[str, Any]) -> str:
    model = botocore.session.get_session().get_service_model("sagemaker").operation_model("CreateTrainingJob")
    report = ParamValidator().validate(request, model.input_shape)
    return report.generate_report() if report.has_errors() else ""


def test_a_sharded_version_packs_every_shard_then_trains_from_its_shard_prefixes(workflow):
    version = "20261201T000000Z-5ba4d000"
    plan = put_sharded_version(workflow.s3, BUCKET, version)
    before = len(workflow.sagemaker.requests)

    result = workflow.run(version, input="shards")

    assert result.status == "SUCCEEDED", (result.error, result.cause)
    entered = result.states_entered()
    assert entered.index("PackShards") < entered.index("ShardChannels") < entered.index("Train")
    assert "FileChannels" not in entered
    assert sorted(r["key"] for r in workflow.packed[-len(plan) :]) == sorted(s["key"] for s in plan)
    (sent,) = workflow.sagemaker.requests[before:]
    assert sent == expected_request(workflow, sent, version, shards=True)
    assert sagemaker_validation_errors(sent) == ""
    splits = [c for c in sent["InputDataConfig"] if c["ChannelName"] != "pretrained"]
    assert {c["InputMode"] for c in splits} == {"FastFile"}
    assert {c["DataSource"]["S3DataSource"]["S3DataType"] for c in splits} == {"S3Prefix"}
    # Each channel holds exactly its split's shards, which hold exactly the split's rows, in CSV order.
    seen = workflow.recorder.seen[-1]
    for channel, split in job.CHANNELS:
        shards = [s for s in plan if s["split"] == split]
        assert sorted(seen[channel]) == sorted(s["key"].rsplit("/", 1)[1] for s in shards)
        records = [r for name in sorted(seen[channel]) for r in shard_records(seen[channel][name])]
        rows = csv_rows(workflow.s3, BUCKET, version, split)
        assert len(records) == len(rows) > 0
        assert all(row["key"].encode() in record for row, record in zip(rows, records, strict=True))


def test_packing_again_writes_nothing_twice(workflow):
    version = "20261201T000000Z-5ba4d001"
    plan = put_sharded_version(workflow.s3, BUCKET, version, seed=6)
    assert workflow.run(version, input="shards").status == "SUCCEEDED"
    again = workflow.run(version, input="shards")
    assert again.status == "SUCCEEDED", (again.error, again.cause)
    assert [r["status"] for r in workflow.packed[-len(plan) :]] == ["exists"] * len(plan)


def test_a_version_without_a_plan_trains_from_its_files_as_before(workflow):
    version = "20261201T000000Z-5ba4d002"
    put_sharded_version(workflow.s3, BUCKET, version, seed=7)
    before, packs = len(workflow.sagemaker.requests), len(workflow.packed)

    result = workflow.run(version)

    assert result.status == "SUCCEEDED", (result.error, result.cause)
    entered = result.states_entered()
    assert "FileChannels" in entered and "PackShards" not in entered
    assert len(workflow.packed) == packs
    (sent,) = workflow.sagemaker.requests[before:]
    assert sent == expected_request(workflow, sent, version, shards=False)
    assert sagemaker_validation_errors(sent) == ""
    assert {c["InputMode"] for c in sent["InputDataConfig"]} == {"File"}
    seen = workflow.recorder.seen[-1]
    rows = csv_rows(workflow.s3, BUCKET, version, "train")
    assert {row["key"] for row in rows} <= set(seen["train"])
    assert not any(name.endswith(".tfrecord") for name in seen["train"])


def test_a_shard_that_cannot_be_packed_fails_the_run_before_training(workflow):
    version = "20261201T000000Z-5ba4d003"
    put_sharded_version(workflow.s3, BUCKET, version, seed=8)
    lost = csv_rows(workflow.s3, BUCKET, version, "val")[0]["key"]
    workflow.s3.delete_object(Bucket=BUCKET, Key=lost)
    before = len(workflow.sagemaker.requests)

    result = workflow.run(version, input="shards")

    assert result.status == "FAILED"
    entered = result.states_entered()
    assert "Train" not in entered and len(workflow.sagemaker.requests) == before
    failure_path = ["PackFailed", "DescribeFailure", "RecordFailure", "NotifyFailure", "Failed"]
    assert entered[entered.index("PackShards") + 1 :] == failure_path
    name = result.arn.rsplit(":", 1)[1]
    body = workflow.s3.get_object(Bucket=BUCKET, Key=f"training/{DATASET}/failures/{name}.json")["Body"]
    failure = json.loads(body.read())
    assert failure["failed_state"] == "PackShards"
    assert failure["error"] == "States.ExceedToleratedFailureThreshold"
