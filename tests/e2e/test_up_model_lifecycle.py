"""End to end: `medimage up --parameter ApprovalRequired=true` holds a passed model until a person runs
`medimage model approve --stack-json`; the model then becomes production with that sign-off in its history."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import boto3
import pytest

from medimage.core import layout
from medimage.core.presets import get_preset
from medimage.core.sign_off import sign_off_key
from medimage.local.synthetic import generate
from tests.e2e.local_stack import free_port, stop, wait_for
from tests.e2e.test_up import CLI, DS, LEARNS

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("e2e")]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=600, check=False)


def test_up_waits_for_a_sign_off_and_approve_promotes_with_the_approver(tmp_path: Path):
    port = free_port()
    out = (tmp_path / "up.out").open("w")
    proc = subprocess.Popen(
        [
            *CLI,
            "up",
            "--workdir",
            str(tmp_path),
            "--port",
            str(port),
            "--api-port",
            str(free_port()),
            "--epochs",
            "2",
            "--parameter",
            "ApprovalRequired=true",
        ],
        stdout=out,
        stderr=subprocess.STDOUT,
        env={**os.environ, "MEDIMAGE_TF_THREADS": "1", "OMP_NUM_THREADS": "1"},
    )
    try:
        stack_json = tmp_path / "stack.json"
        wait_for("stack.json", stack_json.exists, proc, timeout_s=120)
        stack = json.loads(stack_json.read_text())
        session = boto3.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
        )
        s3 = session.client("s3", endpoint_url=stack["endpoint_url"])
        sfn = session.client("stepfunctions", endpoint_url=stack["endpoint_url"])
        bucket, machine = stack["bucket"], stack["state_machine_arn"]
        for f in generate(get_preset(DS), per_class=60, size=32, seed=7):
            s3.put_object(Bucket=bucket, Key=f"incoming/labeled/{DS}/{f.folder}/{f.filename}", Body=f.data)
        s3.put_object(Bucket=bucket, Key=layout.commit_key(DS), Body=b"")

        def pending() -> dict[str, Any] | None:
            try:
                body = s3.get_object(Bucket=bucket, Key=sign_off_key(DS))["Body"].read()
            except s3.exceptions.NoSuchKey:
                return None
            return json.loads(body).get("pending")

        def commit_run_settled() -> bool:
            executions = sfn.list_executions(stateMachineArn=machine)["executions"]
            return bool(executions) and (pending() is not None or executions[0]["status"] != "RUNNING")

        # The commit's short run (two epochs) may not pass the gate; a run that learns the set does.
        wait_for("the commit's execution", commit_run_settled, proc)
        if pending() is None:
            started = cli(
                "pipeline",
                "start",
                "--dataset",
                DS,
                "--stack-json",
                str(stack_json),
                *[arg for pair in LEARNS for arg in ("-H", pair)],
            )
            assert started.returncode == 0, started.stdout[-2000:] + started.stderr[-2000:]
        request = wait_for("a sign-off request", pending, proc)
        assert s3.list_objects_v2(Bucket=bucket, Prefix=layout.production_pointer_key(DS))["KeyCount"] == 0

        approved = cli(
            "model", "approve", "--dataset", DS, "--stack-json", str(stack_json), "--note", "read the gate"
        )
        assert approved.returncode == 0, approved.stdout[-2000:] + approved.stderr[-2000:]

        def ended() -> str | None:
            status = sfn.describe_execution(executionArn=request["execution"])["status"]
            return None if status == "RUNNING" else status

        assert wait_for("the approved execution", ended, proc, timeout_s=120) == "SUCCEEDED"
        history = sfn.get_execution_history(executionArn=request["execution"])["events"]
        entered = [e["stateEnteredEventDetails"]["name"] for e in history if "stateEnteredEventDetails" in e]
        assert entered[-1] == "SignedOff"
        listed = cli("model", "list", "--dataset", DS, "--stack-json", str(stack_json))
        assert listed.returncode == 0, listed.stderr
        assert (
            f"{request['version']} signed off by arn:aws:" in listed.stdout
            and "read the gate" in listed.stdout
        )
    finally:
        try:
            stop(proc)
        finally:
            out.close()
