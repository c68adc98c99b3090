"""Fixtures for the AWS-facing commands: moto in-process, a data bucket, and a way to run `medimage`."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from moto import mock_aws

from medimage.cli.main import main
from medimage.local.account import ACCOUNT, REGION

BUCKET = "medimage-data-test"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/sfn"


@dataclass
class CliRun:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


@pytest.fixture(autouse=True)
def _no_stack_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "MEDIMAGE_BUCKET",
        "MEDIMAGE_STATE_MACHINE_ARN",
        "MEDIMAGE_STACK",
        "MEDIMAGE_BULK_IMPORT_ARN",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def aws() -> Iterator[None]:
    with mock_aws():
        yield


@pytest.fixture
def s3(aws: None) -> Any:
    client = boto3.client("s3", region_name=REGION)
    client.create_bucket(Bucket=BUCKET)
    return client


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., CliRun]:
    def run(*argv: str) -> CliRun:
        capsys.readouterr()
        code = main(list(argv))
        captured = capsys.readouterr()
        return CliRun(code, captured.out, captured.err)

    return run


def trivial_state_machine(sfn: Any, name: str = "training", definition: dict[str, Any] | None = None) -> str:
    definition = definition or {"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}
    created = sfn.create_state_machine(name=name, definition=json.dumps(definition), roleArn=ROLE)
    return created["stateMachineArn"]
