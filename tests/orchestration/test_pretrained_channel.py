"""The training jobs' `pretrained` channel, locally: the local SageMaker delivers an S3Prefix channel as File
mode does (every object below the prefix, in SM_CHANNEL_PRETRAINED), fails a job whose prefix is empty as
SageMaker does, and the local stack stages the weights as `medimage deploy` would, or runs without them."""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest

from medimage.core import training_job as job
from medimage.core.errors import DeployProblem
from medimage.core.executions import execution_input
from medimage.core.layout import MOBILENET_V2_PREFIX
from medimage.local.account import ACCOUNT, REGION
from medimage.local.environment import LocalAws
from medimage.local.sagemaker import LocalSageMaker
from medimage.ops.deploy import PRETRAINED_FILES
from medimage.ops.executions import wait_for_execution
from medimage.training.pretrained import MOBILENET_V2_FILE, PRETRAINED_DIR_ENV
from medimage.training.runner import run_train_script
from tests.ops.ops_helpers import pretrained_folder

BUCKET = "medimage-channel-test"
DATASET, PRESET, VERSION = "chestxray2017", "chestxray2017-binary", "20261125T190500Z-1a2b3c4d"
PREFIX = f"manifests/{DATASET}/{VERSION}/"

# Stands in for train.py: records, in the model directory, each channel's files as the process sees them.
SCRIPT = """\
import json, os, pathlib
seen = {}
for name in json.loads(os.environ["SM_CHANNELS"]):
    root = pathlib.Path(os.environ["SM_CHANNEL_" + name.upper()])
    seen[name] = {p.relative_to(root).as_posix(): p.read_text() for p in root.rglob("*") if p.is_file()}
record = {"channels": seen, "pretrained_env": os.environ.get("SM_CHANNEL_PRETRAINED")}
pathlib.Path(os.environ["SM_MODEL_DIR"], "seen.json").write_text(json.dumps(record))
"""


def put_manifests(s3: Any, bucket: str) -> None:
    """One image per split and the ManifestFile that lists it."""
    for _, split in job.CHANNELS:
        key = f"incoming/labeled/{DATASET}/NORMAL/{split}-1.jpeg"
        s3.put_object(Bucket=bucket, Key=key, Body=f"image of {split}".encode())
        body = json.dumps([{"prefix": f"s3://{bucket}/"}, key]).encode()
        s3.put_object(Bucket=bucket, Key=f"{PREFIX}{split}.manifest", Body=body)


def request(name: str) -> dict[str, Any]:
    return job.create_training_job_request(
        job_name=name,
        role_arn=f"arn:aws:iam::{ACCOUNT}:role/medimage-sagemaker",
        image_uri="training-image",
        instance_type=job.DEFAULT_INSTANCE_TYPE,
        bucket=BUCKET,
        dataset=DATASET,
        manifest_prefix=PREFIX,
        hyperparameters=job.hyperparameters(DATASET, PRESET, VERSION, "s3://source", REGION),
    )


@pytest.fixture
def s3() -> Iterator[Any]:
    from moto import mock_aws

    with mock_aws():
        client = boto3.client("s3", region_name=REGION)
        client.create_bucket(Bucket=BUCKET)
        put_manifests(client, BUCKET)
        yield client


@pytest.fixture
def script_trainer(tmp_path: Path) -> Any:
    script = tmp_path / "record_channels.py"
    script.write_text(SCRIPT)

    def trainer(channels: Any, hyperparameters: Any, model_dir: Path, output_dir: Path) -> Any:
        return run_train_script(channels, hyperparameters, model_dir, output_dir, script=script)

    return trainer


def seen_by_the_script(s3: Any, name: str) -> dict[str, Any]:
    body = s3.get_object(Bucket=BUCKET, Key=f"training/{DATASET}/{name}/output/model.tar.gz")["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as tar:
        member = tar.extractfile("seen.json")
        assert member is not None
        return json.loads(member.read())


def test_an_s3prefix_channel_reaches_the_script_as_sm_channel_pretrained(s3, script_trainer):
    for key, text in (
        (f"{MOBILENET_V2_PREFIX}{MOBILENET_V2_FILE}", "weights"),
        (f"{MOBILENET_V2_PREFIX}nested/notes.txt", "notes"),
        (MOBILENET_V2_PREFIX, ""),  # a console folder marker: no file
        ("pretrained/other_model/ignored.txt", "not this prefix"),
    ):
        s3.put_object(Bucket=BUCKET, Key=key, Body=text.encode())
    sagemaker = LocalSageMaker(trainer=script_trainer)

    sagemaker.create_training_job(request("job-1"))

    described = sagemaker.describe_training_job("job-1")
    assert described["TrainingJobStatus"] == "Completed", described.get("FailureReason")
    seen = seen_by_the_script(s3, "job-1")
    assert seen["channels"]["pretrained"] == {MOBILENET_V2_FILE: "weights", "nested/notes.txt": "notes"}
    assert Path(seen["pretrained_env"]).name == "pretrained"
    key = f"incoming/labeled/{DATASET}/NORMAL/train-1.jpeg"
    assert seen["channels"]["train"] == {key: "image of train"}


def test_an_empty_prefix_fails_the_job_as_sagemaker_does(s3):
    calls: list[Any] = []
    sagemaker = LocalSageMaker(trainer=lambda *args: calls.append(args))

    sagemaker.create_training_job(request("job-2"))

    described = sagemaker.describe_training_job("job-2")
    assert described["TrainingJobStatus"] == "Failed"
    uri = f"s3://{BUCKET}/{MOBILENET_V2_PREFIX}"
    assert described["FailureReason"].startswith("ClientError: ")
    assert f'No S3 objects found under S3 URL "{uri}"' in described["FailureReason"]
    assert calls == []


def test_an_optional_channel_with_nothing_under_its_prefix_is_left_out(s3, script_trainer):
    sagemaker = LocalSageMaker(trainer=script_trainer, optional_channels=frozenset({"pretrained"}))

    sagemaker.create_training_job(request("job-3"))

    described = sagemaker.describe_training_job("job-3")
    assert described["TrainingJobStatus"] == "Completed", described.get("FailureReason")
    seen = seen_by_the_script(s3, "job-3")
    assert sorted(seen["channels"]) == ["test", "train", "validation"]
    assert seen["pretrained_env"] is None


# ------------------------------------------------------------------------------------------ the local stack
@dataclass
class ChannelRecorder:
    """A trainer that keeps each job's channel files and fails the job at once (the test needs no model)."""

    seen: list[dict[str, dict[str, bytes]]] = field(default_factory=list)

    def __call__(
        self, channels: dict[str, Path], hyperparameters: Any, model_dir: Path, output_dir: Path
    ) -> Any:
        self.seen.append(
            {
                name: {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}
                for name, root in channels.items()
            }
        )
        return Outcome()


@dataclass
class Outcome:
    ok: bool = False
    seconds: float = 0.0
    metrics: dict[str, float] = field(default_factory=dict)
    failure_reason: str | None = "recorded"


def train_once(env: LocalAws) -> None:
    s3 = boto3.client("s3", region_name=REGION)
    put_manifests(s3, env.bucket)
    sfn = boto3.client("stepfunctions", region_name=REGION)
    payload = execution_input(DATASET, PRESET, VERSION, env.bucket, PREFIX)
    arn = sfn.start_execution(stateMachineArn=env.state_machine_arn, input=json.dumps(payload))[
        "executionArn"
    ]
    wait_for_execution(sfn, arn, timeout_s=120, poll_s=0.1)


def pretrained_keys(env: LocalAws) -> list[str]:
    listing = boto3.client("s3", region_name=REGION).list_objects_v2(Bucket=env.bucket, Prefix="pretrained/")
    return sorted(item["Key"] for item in listing.get("Contents", []))


def test_the_local_stack_stages_the_weights_and_its_jobs_get_them(tmp_path, monkeypatch):
    folder = pretrained_folder(tmp_path / "pretrained")
    monkeypatch.setenv(PRETRAINED_DIR_ENV, str(folder))
    recorder = ChannelRecorder()

    with LocalAws().running(trainer=recorder, work_dir=tmp_path, retry_delay_scale=0.01) as env:
        assert pretrained_keys(env) == sorted(MOBILENET_V2_PREFIX + name for name in PRETRAINED_FILES)
        assert env.pretrained_from == folder
        train_once(env)

    (channels,) = recorder.seen
    assert channels["pretrained"] == {name: (folder / name).read_bytes() for name in PRETRAINED_FILES}


def test_without_the_weights_the_local_stack_still_trains_with_no_pretrained_channel(tmp_path, monkeypatch):
    monkeypatch.setenv(PRETRAINED_DIR_ENV, str(tmp_path / "no-such-folder"))
    recorder = ChannelRecorder()

    with LocalAws().running(trainer=recorder, work_dir=tmp_path, retry_delay_scale=0.01) as env:
        assert pretrained_keys(env) == []
        assert env.pretrained_from is None
        train_once(env)

    (channels,) = recorder.seen
    assert sorted(channels) == ["test", "train", "validation"]


def test_weights_that_fail_their_digest_stop_the_local_stack(tmp_path, monkeypatch):
    folder = pretrained_folder(tmp_path / "pretrained", weights=b"corrupt", listed=b"mobilenet weights")
    monkeypatch.setenv(PRETRAINED_DIR_ENV, str(folder))

    with pytest.raises(DeployProblem, match="SHA256SUMS says"), LocalAws().running(trainer=ChannelRecorder()):
        pass
