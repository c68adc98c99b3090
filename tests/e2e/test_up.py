"""End to end: `medimage up` in a subprocess, driven only through its endpoints by boto3, the AWS CLI,
`medimage pipeline` and HTTP, then stopped with SIGINT."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import boto3
import pytest

from medimage.core import layout
from medimage.core.presets import get_preset
from medimage.local.synthetic import generate
from tests.e2e.local_stack import free_port, stop, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("e2e")]

DS = "chestxray2017-binary"
# Hyperparameters that learn the small synthetic set (as tests/orchestration's GOOD): two epochs at the
# preset's batch size of 32 leave batch norm untrained, so that first model is rejected by the gate.
OCTETS = {"Content-Type": "application/octet-stream"}
CLI = [sys.executable, "-m", "medimage.cli.main"]
LEARNS = [
    "backbone=cnn",
    "epochs=12",
    "image-size=32",
    "batch-size=4",
    "learning-rate=0.001",
    "patience=20",
    "seed=1",
]


def ports() -> list[str]:
    return ["--port", str(free_port()), "--api-port", str(free_port())]


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def http(
    url: str, data: bytes | None = None, headers: dict[str, str] | None = None, method: str | None = None
) -> tuple[int, bytes]:
    method = method or ("POST" if data else "GET")
    request = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_up_serves_the_pipeline_to_real_clients_and_stops_on_sigint(tmp_path: Path):
    port, api_port = free_port(), free_port()
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
            str(api_port),
            "--epochs",
            "2",
        ],
        stdout=out,
        stderr=subprocess.STDOUT,
        env={**os.environ, "MEDIMAGE_TF_THREADS": "1", "OMP_NUM_THREADS": "1"},
    )
    try:
        # GIVEN `up` is ready: stack.json names the endpoint
        stack_json = tmp_path / "stack.json"
        wait_for("stack.json", stack_json.exists, proc, timeout_s=120)
        stack = json.loads(stack_json.read_text())
        assert stack["endpoint_url"] == f"http://127.0.0.1:{port}"
        assert set(stack["queues"]) >= {"AnnotateQueue", "AnnotateDeadLetterQueue", "InferenceQueue"}
        session = boto3.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
        )
        s3 = session.client("s3", endpoint_url=stack["endpoint_url"])
        sfn = session.client("stepfunctions", endpoint_url=stack["endpoint_url"])
        bucket = stack["bucket"]

        # WHEN boto3 uploads a small labeled set, a bad file and `_commit`
        files = generate(get_preset(DS), per_class=60, size=32, seed=7)
        for f in files:
            s3.put_object(Bucket=bucket, Key=f"incoming/labeled/{DS}/{f.folder}/{f.filename}", Body=f.data)
        s3.put_object(
            Bucket=bucket, Key=f"incoming/labeled/{DS}/{files[0].folder}/broken.jpeg", Body=b"no jpeg"
        )
        s3.put_object(Bucket=bucket, Key=layout.commit_key(DS), Body=b"")

        # THEN the bad file is quarantined and the commit's execution (two epochs) succeeds
        def finished() -> list[dict[str, Any]]:
            executions = sfn.list_executions(stateMachineArn=stack["state_machine_arn"])["executions"]
            return [e for e in executions if e["status"] != "RUNNING"]

        first = wait_for("the commit's execution", finished, proc)
        assert first[0]["status"] == "SUCCEEDED"
        quarantined = s3.list_objects_v2(Bucket=bucket, Prefix=f"quarantine/{DS}/").get("KeyCount", 0)
        assert quarantined == 2  # the file and its reason

        # WHEN `medimage pipeline` (the deployed-stack CLI, given stack.json) trains again with settings
        # that learn the set, THEN that execution succeeds and promotes
        started = subprocess.run(
            [
                *CLI,
                "pipeline",
                "start",
                "--dataset",
                DS,
                "--stack-json",
                str(stack_json),
                "--follow",
                "--json",
            ]
            + [arg for pair in LEARNS for arg in ("-H", pair)],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert started.returncode == 0, started.stdout[-2000:] + started.stderr[-2000:]
        pointer = json.loads(
            s3.get_object(Bucket=bucket, Key=layout.production_pointer_key(DS))["Body"].read()
        )
        listed = subprocess.run(
            [*CLI, "model", "list", "--dataset", DS, "--stack-json", str(stack_json)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert listed.returncode == 0 and pointer["version"] in listed.stdout

        # WHEN unlabeled images are uploaded (boto3, and the AWS CLI when installed)
        unlabeled = generate(get_preset(DS), per_class=2, size=32, seed=99)
        for f in unlabeled:
            s3.put_object(Bucket=bucket, Key=f"{layout.UNLABELED_PREFIX}{DS}/{f.filename}", Body=f.data)
        expected = [f.filename for f in unlabeled]
        aws = shutil.which("aws") or str(Path(sys.executable).with_name("aws"))
        if Path(aws).exists():
            scan = tmp_path / "scan-by-cli.jpeg"
            scan.write_bytes(generate(get_preset(DS), per_class=1, size=32, seed=123)[0].data)
            cli_env = {
                **os.environ,
                "AWS_ENDPOINT_URL": stack["endpoint_url"],
                "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing",
            }
            target = f"s3://{bucket}/{layout.UNLABELED_PREFIX}{DS}/"
            copied = subprocess.run(
                [aws, "s3", "cp", str(scan), target], env=cli_env, capture_output=True, text=True, timeout=120
            )
            assert copied.returncode == 0, copied.stderr
            expected.append(scan.name)

        # THEN each gets a prediction object, and prediction_output.txt lists them
        def predicted() -> bool:
            keys = {
                o["Key"]
                for o in s3.list_objects_v2(Bucket=bucket, Prefix=f"predictions/{DS}/").get("Contents", [])
            }
            wanted = {layout.prediction_key(DS, f"{layout.UNLABELED_PREFIX}{DS}/{name}") for name in expected}
            return wanted <= keys and any(k.endswith("prediction_output.txt") for k in keys)

        wait_for("the predictions", predicted, proc, timeout_s=120)
        result = json.loads(
            s3.get_object(
                Bucket=bucket, Key=layout.prediction_key(DS, f"{layout.UNLABELED_PREFIX}{DS}/{expected[0]}")
            )["Body"].read()
        )
        assert result["label"] in {"normal", "pneumonia"}

        # AND the API answers /health and /predict through the inference handler
        status, _ = http(f"{stack['api_url']}health")
        assert status == 200
        status, body = http(
            f"{stack['api_url']}predict?dataset={DS}", unlabeled[0].data, {"Content-Type": "image/jpeg"}
        )
        assert status == 200, body
        assert json.loads(body)["model_version"] == pointer["version"]

        # AND garbage sent to the S3 endpoint gets moto's S3 error, and `up` keeps serving
        status, body = http(
            f"{stack['endpoint_url']}/no-such-bucket/x", b"\x00\xffgarbage", OCTETS, method="PUT"
        )
        assert 400 <= status < 500 and b"NoSuchBucket" in body
        assert s3.head_bucket(Bucket=bucket)["ResponseMetadata"]["HTTPStatusCode"] == 200
    finally:
        # WHEN SIGINT arrives, THEN `up` stops within seconds, exits 0 and frees both ports
        try:
            stop(proc)
        finally:
            out.close()
    log = (tmp_path / "up.out").read_text()
    assert proc.returncode == 0, log[-3000:]
    assert "medimage up: stopped" in log
    assert "gate PASSED" in log and "AnnotateFunction <- sqs:" in log
    assert port_is_free(port) and port_is_free(api_port)


def test_up_refuses_a_port_in_use_with_one_line(tmp_path: Path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = subprocess.run(
            [*CLI, "up", "--workdir", str(tmp_path), "--port", str(port), "--api-port", str(free_port())],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"medimage up: error: 127.0.0.1:{port} is already in use (Address already in use): "
        "stop what uses it or pass --port"
    ]


def test_up_refuses_an_unreadable_template_with_one_line(tmp_path: Path):
    bad = tmp_path / "template.yaml"
    bad.write_text("Resources: [unclosed\n")
    proc = subprocess.run(
        [*CLI, "up", "--workdir", str(tmp_path), "--template", str(bad), *ports()],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"medimage up: error: cannot read the template {bad}")
