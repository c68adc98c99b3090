"""`medimage deploy`: the training source tarball SageMaker gets, the pretrained weights beside it, SAM
invocation, the missing-SAM message."""

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

from medimage.core.errors import DeployProblem
from medimage.local.account import REGION
from medimage.ops import deploy
from medimage.training.pretrained import MOBILENET_V2_FILE, PRETRAINED_DIR_ENV
from tests.ops.ops_helpers import pretrained_folder

from .conftest import BUCKET

REPO = Path(__file__).resolve().parents[2]


WEIGHTS_PREFIX = "pretrained/mobilenet_v2/"


def bucket_keys(s3: Any) -> list[str]:
    return sorted(item["Key"] for item in s3.list_objects_v2(Bucket=BUCKET).get("Contents", []))


@pytest.fixture
def checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of what deploy reads from a checkout, as the working directory, with a pretrained folder in
    $MEDIMAGE_PRETRAINED_DIR."""
    monkeypatch.setenv(PRETRAINED_DIR_ENV, str(pretrained_folder(tmp_path / "pretrained")))
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
    weights = s3.get_object(Bucket=BUCKET, Key=WEIGHTS_PREFIX + MOBILENET_V2_FILE)["Body"].read()
    assert weights == b"mobilenet weights"
    assert f"pretrained weights: s3://{BUCKET}/{WEIGHTS_PREFIX} (4 uploaded, 0 already there)" in run.out


def stack_with_bucket() -> None:
    cfn = boto3.client("cloudformation", region_name=REGION)
    template = {
        "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {"DataBucketName": {"Value": BUCKET}},
    }
    cfn.create_stack(StackName="medimage-dev", TemplateBody=json.dumps(template))


def test_deploy_uploads_the_weights_with_their_licence_labels_and_digests(checkout, s3, cli) -> None:
    stack_with_bucket()
    run = cli("deploy", "--config-env", "dev", "--source-only")
    assert run.code == 0, run.err
    assert bucket_keys(s3) == [
        "code/training/sourcedir.tar.gz",
        *sorted(WEIGHTS_PREFIX + name for name in deploy.PRETRAINED_FILES),
    ]  # not the other model SHA256SUMS lists
    folder = Path(os.environ[PRETRAINED_DIR_ENV])
    for name in deploy.PRETRAINED_FILES:
        stored = s3.get_object(Bucket=BUCKET, Key=WEIGHTS_PREFIX + name)
        assert stored["Body"].read() == (folder / name).read_bytes(), name
    # Run again: nothing new to send; a changed label file alone goes up again.
    again = cli("deploy", "--config-env", "dev", "--source-only")
    assert "(0 uploaded, 4 already there)" in again.out
    (folder / "imagenet_labels.txt").write_text("background\ntench\ngoldfish\n")
    changed = deploy.upload_pretrained(s3, BUCKET, folder)
    assert [f.key for f in changed if f.uploaded] == [WEIGHTS_PREFIX + "imagenet_labels.txt"]
    labels = s3.get_object(Bucket=BUCKET, Key=WEIGHTS_PREFIX + "imagenet_labels.txt")["Body"].read()
    assert labels.endswith(b"goldfish\n")


def test_weights_that_do_not_match_their_digest_stop_the_deploy_before_anything(
    checkout: Path, s3: Any, cli: Any, tmp_path: Path
) -> None:
    fake_sam(checkout)
    stack_with_bucket()
    bad = pretrained_folder(tmp_path / "bad", weights=b"truncated weigh", listed=b"mobilenet weights")
    run = cli("deploy", "--config-env", "dev", "--pretrained-dir", str(bad))
    assert run.code == 2
    assert "SHA256SUMS says" in run.err and PRETRAINED_DIR_ENV in run.err and "--pretrained-dir" in run.err
    assert not (checkout / "sam-calls.log").exists()  # SAM never ran
    assert bucket_keys(s3) == []
    with pytest.raises(DeployProblem, match="SHA256SUMS says"):
        deploy.upload_pretrained(s3, BUCKET, bad)
    assert bucket_keys(s3) == []


@pytest.mark.parametrize("case", ["unset", "missing-folder", "missing-file", "not-listed"])
def test_no_usable_weights_folder_is_one_clear_error(checkout, s3, cli, tmp_path, monkeypatch, case) -> None:
    stack_with_bucket()
    folder = Path(os.environ[PRETRAINED_DIR_ENV])
    if case == "unset":
        monkeypatch.delenv(PRETRAINED_DIR_ENV)
    elif case == "missing-folder":
        monkeypatch.setenv(PRETRAINED_DIR_ENV, str(tmp_path / "nowhere"))
    elif case == "missing-file":
        (folder / "LICENSE-Apache-2.0.txt").unlink()
    else:
        (folder / "SHA256SUMS").write_text("")
    run = cli("deploy", "--config-env", "dev", "--source-only")
    assert run.code == 2
    (line,) = run.err.strip().splitlines()
    assert line.startswith("medimage deploy: error: ")
    assert PRETRAINED_DIR_ENV in line and "--pretrained-dir" in line
    assert bucket_keys(s3) == []


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


def test_ci_deploys_the_last_build_hands_sam_its_arguments_and_leaves_the_weights(
    checkout: Path, s3: Any, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the delivery workflow runs: no weights folder on the runner, the CloudFormation role and no
    change-set prompt for `sam deploy`."""
    monkeypatch.delenv(PRETRAINED_DIR_ENV)
    fake_sam(checkout)
    stack_with_bucket()
    run = cli(
        "deploy",
        "--config-env",
        "prod",
        "--stack",
        "medimage-dev",
        "--no-build",
        "--no-pretrained",
        "--",
        "--role-arn",
        "arn:aws:iam::123456789012:role/cfn",
        "--no-confirm-changeset",
    )
    assert run.code == 0, run.err
    calls = (checkout / "sam-calls.log").read_text().splitlines()
    assert calls == [
        "deploy --config-env prod --role-arn arn:aws:iam::123456789012:role/cfn --no-confirm-changeset"
    ]
    assert bucket_keys(s3) == ["code/training/sourcedir.tar.gz"]
    assert f"pretrained weights: s3://{BUCKET}/{WEIGHTS_PREFIX} left as they are" in run.out
