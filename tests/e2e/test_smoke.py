"""The delivery workflow's smoke test (scripts/smoke_test.py) passes against `medimage up` with a published
model: /health, POST /predict and a drop-to-label round trip. Deploying is the one step that cannot run
here; everything after it does."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

from tests.e2e.local_stack import running_up
from tests.inference.conftest import DATASET, build_model_dir, publish

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("e2e")]

REPO = Path(__file__).resolve().parents[2]
SMOKE = [sys.executable, str(REPO / "scripts" / "smoke_test.py")]


def smoke_test(stack_json: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SMOKE, "--stack-json", str(stack_json), "--dataset", DATASET, "--auth", "none", "--timeout", "120"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_smoke_test_passes_against_the_local_stack(tmp_path: Path):
    model = build_model_dir(tmp_path / "model", seed=1)
    with running_up(tmp_path, tmp_path / "up.out") as up:
        s3 = boto3.client(
            "s3",
            endpoint_url=up.stack["endpoint_url"],
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        pointer = publish(s3, model, "20261125T000000Z-smoke", bucket=up.stack["bucket"])
        smoke = smoke_test(up.stack_json)
        assert smoke.returncode == 0, smoke.stdout + smoke.stderr
        summary = json.loads(smoke.stdout.strip().splitlines()[-1])
        assert summary["health"] == "ok"
        assert summary["predict"]["model_version"] == pointer["version"]
        assert summary["drop_to_label"]["label"] in {"normal", "bacterial", "viral"}


def test_smoke_test_fails_with_one_line_when_the_dataset_has_no_model(tmp_path: Path):
    with running_up(tmp_path, tmp_path / "up.out") as up:
        smoke = smoke_test(up.stack_json)
        assert smoke.returncode == 1
        assert smoke.stderr.startswith("smoke test FAILED: POST /predict answered 503")
