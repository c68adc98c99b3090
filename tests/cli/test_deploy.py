"""`medimage deploy`: the training source tarball SageMaker gets, SAM invocation, the missing-SAM message."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import boto3
import pytest

from medimage.local.account import REGION
from medimage.ops import deploy

from .conftest import BUCKET

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of what deploy reads from a checkout, as the working directory."""
    root = tmp_path / "checkout"
    root.mkdir()
    for name in ("template.yaml", "samconfig.toml"):
        shutil.copy(REPO / name, root / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(REPO / "training", root / "training", ignore=ignore)
    shutil.copytree(REPO / "src" / "medimage", root / "src" / "medimage", ignore=ignore)
    (root / "src" / "medimage" / "__pycache__").mkdir(exist_ok=True)
    (root / "src" / "medimage" / "__pycache__" / "stale.cpython-311.pyc").write_bytes(b"stale")
    monkeypatch.chdir(root)
    return root


def fake_sam(root: Path, exit_code: int = 0) -> Path:
    """A stand-in for .venv-sam/bin/sam that records its arguments."""
    sam = root / ".venv-sam" / "bin" / "sam"
    sam.parent.mkdir(parents=True)
    sam.write_text(f'#!/bin/sh\necho "$@" >> "{root}/sam-calls.log"\nexit {exit_code}\n')
    sam.chmod(0o755)
    return sam


def test_tarball_has_train_py_at_its_root_and_medimage_beside_it(checkout: Path, tmp_path: Path) -> None:
    tarball = deploy.pack_training_source(checkout, tmp_path / "out" / "sourcedir.tar.gz")
    with tarfile.open(tarball) as tar:
        names = set(tar.getnames())
        tar.extractall(tmp_path / "extracted", filter="data")
    assert {
        "train.py",
        "requirements.txt",
        "medimage/__init__.py",
        "medimage/core/layout.py",
        "medimage/presets/chestxray2017.json",
    } <= names
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)

    # As SageMaker runs it: train.py's own import logic, no installed medimage (-S: no site-packages),
    # from another working directory. Only the standard library is needed to get this far.
    probe = (
        "import runpy, sys\n"
        "ns = runpy.run_path(sys.argv[1], run_name='probe')\n"
        "ns['_make_medimage_importable']()\n"
        "import medimage\n"
        "from medimage.core.presets import get_preset\n"
        "print(medimage.__file__)\n"
        "print(get_preset('chestxray2017').classes)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "-S", "-c", probe, str(tmp_path / "extracted" / "train.py")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    module_file, classes = done.stdout.splitlines()
    assert Path(module_file).resolve() == (tmp_path / "extracted" / "medimage" / "__init__.py").resolve()
    assert "normal" in classes


def test_tarball_is_reproducible(checkout: Path, tmp_path: Path) -> None:
    first = deploy.pack_training_source(checkout, tmp_path / "a.tar.gz")
    os.utime(checkout / "training" / "train.py", (1, 1))  # times do not matter, content does
    second = deploy.pack_training_source(checkout, tmp_path / "b.tar.gz")
    assert first.read_bytes() == second.read_bytes()


def test_missing_sam_cli_is_one_line(checkout: Path, cli: Any) -> None:
    run = cli("deploy", "--config-env", "dev")
    assert run.code == 2
    assert run.err == (
        "medimage deploy: error: no SAM CLI at .venv-sam/bin/sam: run `make sam-install` first\n"
    )


def test_deploy_runs_sam_then_uploads_the_source(checkout: Path, s3: Any, cli: Any) -> None:
    fake_sam(checkout)
    cfn = boto3.client("cloudformation", region_name=REGION)
    template = {
        "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {
            "DataBucketName": {"Value": BUCKET},
            "TrainingSourceUri": {"Value": f"s3://{BUCKET}/code/custom/sourcedir.tar.gz"},
        },
    }
    cfn.create_stack(StackName="medimage-dev", TemplateBody=json.dumps(template))

    run = cli("deploy", "--config-env", "dev")
    assert run.code == 0, run.err
    calls = (checkout / "sam-calls.log").read_text().splitlines()
    assert calls == ["build --config-env dev", "deploy --config-env dev"]
    head = s3.head_object(Bucket=BUCKET, Key="code/custom/sourcedir.tar.gz")  # the stack's own location
    assert head["ContentLength"] > 0
    assert f"s3://{BUCKET}/code/custom/sourcedir.tar.gz" in run.out


def test_failed_sam_step_stops_before_uploading(checkout: Path, s3: Any, cli: Any) -> None:
    fake_sam(checkout, exit_code=3)
    run = cli("deploy", "--guided")
    assert run.code == 2
    assert run.err.strip().splitlines()[-1] == (
        "medimage deploy: error: `sam build` failed (exit 3); its output is above"
    )
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET)


def test_source_location_falls_back_to_the_template_default(checkout: Path) -> None:
    where = deploy.source_location({"DataBucketName": "b"}, checkout)
    assert where.uri == "s3://b/code/training/sourcedir.tar.gz"
    assert deploy.sam_commands(Path("sam"), "prod", guided=True, build=False) == [
        ["sam", "deploy", "--config-env", "prod", "--guided"]
    ]
