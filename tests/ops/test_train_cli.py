"""`medimage train --on sagemaker` against a local stack (moto server, `medimage up`'s stack.json): it
launches the job moto describes, and says what is missing with a stable code."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest

from medimage.cli.main import main
from medimage.core import training_job as job
from tests.ops.ops_helpers import DATASET, REGION, ROLE_ARN, VERSION, make_bucket, put_manifest_version

BUCKET = "medimage-cli-test"


@dataclass
class Run:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., Run]:
    def run(*argv: str) -> Run:
        capsys.readouterr()
        code = main(list(argv))
        captured = capsys.readouterr()
        return Run(code, captured.out, captured.err)

    return run


@pytest.fixture
def stack_json(moto_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`medimage up`'s stack.json; what reading it sets in the environment is put back after the test."""
    for name in ("MEDIMAGE_BUCKET", "MEDIMAGE_STATE_MACHINE_ARN", "MEDIMAGE_SAGEMAKER_ROLE_ARN"):
        monkeypatch.setenv(name, "-")
        monkeypatch.delenv(name)
    path = tmp_path / "stack.json"
    path.write_text(json.dumps({"endpoint_url": moto_server, "region": REGION, "bucket": BUCKET}))
    return path


def test_help_names_the_sagemaker_flags(capsys):
    with pytest.raises(SystemExit) as done:
        main(["train", "--on", "sagemaker", "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--manifest-version", "--instance-type", "--wait", "-H", "--dataset", "--role"):
        assert flag in text


def test_the_command_launches_a_job_moto_describes(cli, stack_json, sdk_python):
    s3 = make_bucket(BUCKET)
    prefix = put_manifest_version(s3, BUCKET)
    run = cli(
        "train", "--on", "sagemaker", "--dataset", DATASET, "--stack-json", str(stack_json),
        "--role", ROLE_ARN, "--instance-type", "ml.p3.2xlarge", "-H", "epochs=2", "--wait", "--json",
    )  # fmt: skip
    assert run.code == 0, run.err
    answer = json.loads(run.out)
    assert answer["manifest_version"] == VERSION and answer["status"] == "Completed"
    described = boto3.client("sagemaker", region_name=REGION).describe_training_job(
        TrainingJobName=answer["job_name"]
    )
    assert described["HyperParameters"]["epochs"] == "2"
    assert described["HyperParameters"]["manifest-version"] == VERSION
    assert described["ResourceConfig"]["InstanceType"] == "ml.p3.2xlarge"
    assert described["AlgorithmSpecification"]["TrainingImage"].endswith("-gpu-py312")
    assert [c["DataSource"]["S3DataSource"]["S3Uri"] for c in described["InputDataConfig"]] == [
        *(f"s3://{BUCKET}/{prefix}{split}.manifest" for _, split in job.CHANNELS),
        f"s3://{BUCKET}/pretrained/mobilenet_v2/",
    ]
    assert answer["model_artifacts"] == described["ModelArtifacts"]["S3ModelArtifacts"]
    assert answer["model_artifacts"] == job.model_artifacts_uri(BUCKET, DATASET, answer["job_name"])


def test_the_plain_output_says_where_the_model_went(cli, stack_json, sdk_python):
    s3 = make_bucket(BUCKET)
    put_manifest_version(s3, BUCKET)
    run = cli("train", "--on", "sagemaker", "--dataset", DATASET, "--stack-json", str(stack_json),
              "--role", ROLE_ARN)  # fmt: skip
    assert run.code == 0, run.err
    assert f"manifest {VERSION}" in run.out
    assert f"model: s3://{BUCKET}/training/{DATASET}/{VERSION}-" in run.out


def test_no_manifest_has_its_code(cli, stack_json):
    make_bucket(BUCKET)
    run = cli("train", "--on", "sagemaker", "--dataset", DATASET, "--stack-json", str(stack_json),
              "--role", ROLE_ARN)  # fmt: skip
    assert run.code == 2
    assert "[no_manifest]" in run.err and "latest.json" in run.err


def test_no_sdk_environment_has_its_code(cli, stack_json, monkeypatch, tmp_path):
    monkeypatch.setenv("MEDIMAGE_SAGEMAKER_PYTHON", str(tmp_path / "missing" / "python"))
    s3 = make_bucket(BUCKET)
    put_manifest_version(s3, BUCKET)
    run = cli("train", "--on", "sagemaker", "--dataset", DATASET, "--stack-json", str(stack_json),
              "--role", ROLE_ARN)  # fmt: skip
    assert run.code == 2
    assert "[sdk_missing]" in run.err
    assert not boto3.client("sagemaker", region_name=REGION).list_training_jobs()["TrainingJobSummaries"]


def test_each_mode_refuses_the_other_modes_flags_and_names_what_it_lacks(cli, tmp_path):
    run = cli("train", "--on", "sagemaker", "--dataset", DATASET, "--out", str(tmp_path))
    assert run.code == 2 and "--out" in run.err
    run = cli("train", "--on", "sagemaker")
    assert run.code == 2 and "--dataset" in run.err
    run = cli("train", "--preset", "chestxray2017-binary")
    assert run.code == 2 and "--data" in run.err and "--out" in run.err
