"""The SageMaker Python SDK (in .venv-sagemaker) launches the core's CreateTrainingJob request on moto's
SageMaker API: the job moto describes has the state machine's channels, hyperparameters, output path,
resources and the SDK's image for the instance type."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from medimage.adapters.s3 import S3ObjectStore
from medimage.core import training_job as job
from medimage.core.errors import ManifestProblem, MedimageError, SageMakerJobProblem
from medimage.core.shards import SHARD_PLAN, channel_prefix
from medimage.ops import sagemaker_training as sm
from medimage.ops.manifests import find_manifest
from tests.ops.ops_helpers import (
    DATASET,
    PRESET,
    REGION,
    ROLE_ARN,
    SOURCE_KEY,
    VERSION,
    make_bucket,
    put_manifest_version,
)
from tests.ops.test_state_machine_requests import validation_errors

BUCKET = "medimage-sdk-test"


def plan(instance_type: str | None = None, channels: str = "auto", **overrides: str) -> sm.JobPlan:
    return sm.plan_job(
        dataset=DATASET,
        manifest_version=None,
        preset=None,
        instance_type=instance_type,
        overrides=overrides,
        wait=False,
        bucket=BUCKET,
        role_arn=ROLE_ARN,
        source_uri=None,
        stack=None,
        channels=channels,
    )


def without_volatile(described: dict[str, Any]) -> dict[str, Any]:
    return {k: described[k] for k in ("HyperParameters", "InputDataConfig", "ResourceConfig", "RoleArn")}


def test_the_sdk_sends_the_cores_request_and_moto_describes_the_job(moto_server, sdk_python, template):
    s3 = make_bucket(BUCKET)
    prefix = put_manifest_version(s3, BUCKET)
    planned = plan("ml.g5.xlarge", epochs="3", **{"batch-size": "64"})
    lines: list[str] = []
    result = sm.launch(planned, lines.append, sdk_python)

    gpu_image = template["Mappings"]["TrainingImages"][REGION]["Gpu"]
    assert result.image == gpu_image
    assert result.job_name.startswith(f"{VERSION}-") and len(result.job_name) <= job.JOB_NAME_LIMIT
    expected = job.create_training_job_request(
        job_name=result.job_name,
        role_arn=ROLE_ARN,
        image_uri=gpu_image,
        instance_type="ml.g5.xlarge",
        bucket=BUCKET,
        dataset=DATASET,
        manifest_prefix=prefix,
        hyperparameters=job.hyperparameters(
            DATASET,
            PRESET,
            VERSION,
            f"s3://{BUCKET}/{SOURCE_KEY}",
            REGION,
            overrides={"epochs": "3", "batch-size": "64"},
        ),
    )
    assert result.request == expected, "the SDK sent more, less or other than the core's request"
    assert not validation_errors("sagemaker", "CreateTrainingJob", result.request)

    described = boto3.client("sagemaker", region_name=REGION).describe_training_job(
        TrainingJobName=result.job_name
    )
    assert without_volatile(described) == without_volatile(expected)
    assert described["OutputDataConfig"]["S3OutputPath"] == f"s3://{BUCKET}/training/{DATASET}/"
    assert described["AlgorithmSpecification"]["TrainingImage"] == gpu_image
    assert result.model_artifacts == job.model_artifacts_uri(BUCKET, DATASET, result.job_name)
    assert result.model_artifacts == described["ModelArtifacts"]["S3ModelArtifacts"]
    assert any("Training image URI" in line for line in lines), lines


def test_the_default_instance_gets_the_cpu_image(moto_server, sdk_python, template):
    s3 = make_bucket(BUCKET)
    put_manifest_version(s3, BUCKET)
    result = sm.launch(plan(), lambda line: None, sdk_python)
    assert result.image == template["Mappings"]["TrainingImages"][REGION]["Cpu"]
    assert result.request["ResourceConfig"]["InstanceType"] == job.DEFAULT_INSTANCE_TYPE


def test_a_job_the_sdk_refuses_is_an_sdk_failure_with_its_reason(moto_server, sdk_python):
    s3 = make_bucket(BUCKET)
    put_manifest_version(s3, BUCKET)
    planned = plan()
    # A role that is not an ARN: the SDK refuses it before any job exists.
    broken = sm.JobPlan(
        planned.manifest,
        sm.StackSettings(BUCKET, "not-a-role", planned.stack.source_uri, REGION),
        planned.instance_type,
        planned.hyperparameters,
        wait=False,
    )
    with pytest.raises(SageMakerJobProblem) as refused:
        sm.launch(broken, lambda line: None, sdk_python)
    assert refused.value.code == "sdk_failed"
    assert "IAM role" in str(refused.value)
    assert not boto3.client("sagemaker", region_name=REGION).list_training_jobs()["TrainingJobSummaries"]


@pytest.mark.parametrize(
    ("setup", "version", "code"),
    [
        ("nothing", None, "no_manifest"),
        ("manifest", "20990101T000000Z-deadbeef", "no_manifest"),
        ("no-source", None, "no_training_source"),
        ("no-weights", None, "no_pretrained_weights"),
    ],
)
def test_what_is_missing_is_found_before_the_sdk_runs(moto_server, setup, version, code):
    s3 = make_bucket(BUCKET, with_source=setup != "no-source", with_weights=setup != "no-weights")
    if setup != "nothing":
        put_manifest_version(s3, BUCKET)
    with pytest.raises(MedimageError) as missing:
        sm.plan_job(
            dataset=DATASET,
            manifest_version=version,
            preset=None,
            instance_type=None,
            overrides={},
            wait=False,
            bucket=BUCKET,
            role_arn=ROLE_ARN,
            source_uri=None,
            stack=None,
        )
    assert missing.value.code == code
    assert isinstance(missing.value, ManifestProblem if code == "no_manifest" else SageMakerJobProblem)


def test_a_manifest_without_its_preset_needs_one(moto_server):
    s3 = make_bucket(BUCKET)
    prefix = put_manifest_version(s3, BUCKET)
    s3.put_object(Bucket=BUCKET, Key=f"{prefix}stats.json", Body=b"{}")
    store = S3ObjectStore(BUCKET, s3)
    with pytest.raises(ManifestProblem) as missing:
        find_manifest(store, DATASET)
    assert missing.value.code == "no_preset"
    assert find_manifest(store, DATASET, preset="oct2017").preset == "oct2017"


def test_hyperparameters_from_the_command_line():
    assert sm.parse_hyperparameters(["epochs=3", "--batch-size=64"]) == {"epochs": "3", "batch-size": "64"}
    for bad in (["epochs"], ["=3"], ["sagemaker_program=x.py"]):
        with pytest.raises(SageMakerJobProblem) as refused:
            sm.parse_hyperparameters(bad)
        assert refused.value.code == "bad_hyperparameter"


def test_a_missing_sdk_environment_has_its_code(monkeypatch, tmp_path):
    monkeypatch.setenv(sm.SDK_PYTHON_ENV, str(tmp_path / "no-python"))
    with pytest.raises(SageMakerJobProblem) as missing:
        sm.run_sdk("image-uris", {"query": [], "framework": {}}, lambda line: None)
    assert missing.value.code == "sdk_missing"


def put_shard_plan(s3: Any, prefix: str, packed: int) -> list[str]:
    """A shard plan of one shard per channel beside the version's CSVs, the first ``packed`` written."""
    plan = [
        {"split": split, "channel": channel, "index": 0, "first_row": 0, "rows": 1, "bytes": 10, "key": key}
        for channel, split in job.CHANNELS
        for key in [f"{channel_prefix(prefix, split)}{channel}-00000.tfrecord"]
    ]
    s3.put_object(Bucket=BUCKET, Key=f"{prefix}{SHARD_PLAN}", Body=json.dumps(plan).encode())
    for entry in plan[:packed]:
        s3.put_object(Bucket=BUCKET, Key=entry["key"], Body=b"records")
    return [entry["key"] for entry in plan]


def test_a_sharded_version_trains_from_its_shards_in_fastfile_as_the_train_state_does(
    moto_server, sdk_python
):
    s3 = make_bucket(BUCKET)
    prefix = put_manifest_version(s3, BUCKET)
    keys = put_shard_plan(s3, prefix, packed=len(job.CHANNELS))
    planned = plan(channels="auto")
    assert planned.shards and planned.manifest.shards == tuple(keys)
    result = sm.launch(planned, lambda line: None, sdk_python)
    expected = job.input_data_config(BUCKET, prefix, shards=True)
    assert result.request["InputDataConfig"] == expected
    by_name = {c["ChannelName"]: c for c in result.request["InputDataConfig"]}
    assert by_name["train"]["InputMode"] == "FastFile"
    assert by_name["train"]["DataSource"]["S3DataSource"]["S3DataType"] == "S3Prefix"
    assert not validation_errors("sagemaker", "CreateTrainingJob", result.request)
    # Asked for files, the same version trains from its ManifestFile channels.
    assert plan(channels="files").request()["InputDataConfig"] == job.input_data_config(BUCKET, prefix)


def test_unpacked_shards_or_shards_of_a_small_version_are_refused_before_the_sdk_runs(moto_server):
    s3 = make_bucket(BUCKET)
    prefix = put_manifest_version(s3, BUCKET)
    with pytest.raises(ManifestProblem) as none:
        plan(channels="shards")
    assert none.value.code == "no_shards"
    assert not plan(channels="auto").shards  # a small version trains from its files

    put_shard_plan(s3, prefix, packed=1)
    with pytest.raises(ManifestProblem) as unpacked:
        plan(channels="auto")
    assert unpacked.value.code == "shards_not_packed"
    assert "2 of the 3 shards" in str(unpacked.value) and "--channels files" in str(unpacked.value)
    assert not plan(channels="files").shards


def test_pipeline_start_on_a_sharded_version_asks_the_workflow_for_shards(moto_server):
    from medimage.ops.executions import execution_input

    s3 = make_bucket(BUCKET)
    prefix = put_manifest_version(s3, BUCKET)
    assert "input" not in execution_input(s3, BUCKET, DATASET)  # files, as always
    put_shard_plan(s3, prefix, packed=0)  # the workflow's PackShards step packs them
    assert execution_input(s3, BUCKET, DATASET)["input"] == "shards"
