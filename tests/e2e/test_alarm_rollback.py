"""End to end: under `medimage up`, a forced review-rate alarm (`aws cloudwatch set-alarm-state`, or boto3)
rolls production back to the previous model within a minute, and `medimage model list` names the alarm."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest

from medimage.adapters.registry_store import S3RegistryStore
from medimage.core.registry import ModelEntry, promote, sha256_hex
from tests.e2e.local_stack import running_up, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("e2e")]

DS = "chestxray2017"  # the template's InferenceDefaultDataset: the review-rate alarm's dataset
CLI = [sys.executable, "-m", "medimage.cli.main"]
CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


def client(service: str, endpoint: str) -> Any:
    return boto3.client(service, endpoint_url=endpoint, region_name="us-east-1", **CREDENTIALS)


def promote_version(s3: Any, bucket: str, version: str) -> None:
    """What the Promote task does to the registry: the model's file, then the conditional pointer swap."""
    key = f"models/{DS}/{version}/model.tflite"
    data = f"model {version}".encode()
    s3.put_object(Bucket=bucket, Key=key, Body=data)
    entry = ModelEntry(version, key, sha256_hex(data), datetime.now(UTC).isoformat(), {"accuracy": 0.9})
    S3RegistryStore(bucket, s3=s3).update(DS, lambda c: promote(c, DS, entry, c and c.version))


def force_alarm(endpoint: str, name: str) -> None:
    """`aws cloudwatch set-alarm-state` when the AWS CLI is installed, else boto3."""
    aws = shutil.which("aws") or str(Path(sys.executable).with_name("aws"))
    reason = "forced by the end-to-end test"
    if not Path(aws).exists():
        client("cloudwatch", endpoint).set_alarm_state(AlarmName=name, StateValue="ALARM", StateReason=reason)
        return
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }
    command = [aws, "cloudwatch", "set-alarm-state", "--alarm-name", name, "--state-value", "ALARM"]
    done = subprocess.run(
        [*command, "--state-reason", reason], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr


def test_a_forced_review_rate_alarm_rolls_production_back_within_a_minute(tmp_path: Path):
    with running_up(tmp_path, tmp_path / "up.out") as up:
        endpoint, bucket = up.stack["endpoint_url"], up.stack["bucket"]
        s3 = client("s3", endpoint)
        promote_version(s3, bucket, "v1")
        promote_version(s3, bucket, "v2")
        registry = S3RegistryStore(bucket, s3=s3)
        alarm = up.stack["alarms"]["InferenceReviewRateAlarm"]

        started = time.monotonic()
        force_alarm(endpoint, alarm)

        def rolled_back() -> bool:
            pointer = registry.pointer(DS)
            return pointer is not None and pointer.version == "v1"

        wait_for("production back on v1", rolled_back, up.proc, timeout_s=60)
        print(f"rolled back {time.monotonic() - started:.1f} s after the alarm was forced")

        listed = subprocess.run(
            [*CLI, "model", "list", "--dataset", DS, "--stack-json", str(up.stack_json)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert listed.returncode == 0, listed.stderr
        assert f"rollback from v2 on alarm {alarm}" in listed.stdout
        assert "rolled back" in listed.stdout and f"on alarm {alarm}" in listed.stdout.splitlines()[-1]
    log = (tmp_path / "up.out").read_text()
    assert "RollbackFunction <- eventbridge" in log and f"alarm {alarm}" in log
