"""`medimage deploy`: SAM build + deploy, then the training source tarball the state machine trains with.

The Train state hands SageMaker ``sagemaker_submit_directory = s3://<bucket>/<TrainingSourceKey>``; the
tarball holds ``train.py`` (and ``requirements.txt``) at its root and the trainer's runtime set of the
``medimage`` package beside them (``medimage.runtime_sets``), which is where train.py looks for it. It is
built byte-for-byte reproducibly (sorted entries, fixed times and owners), so the same checkout always
uploads the same object.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import subprocess
import tarfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medimage.core.errors import DeployProblem
from medimage.runtime_sets import runtime_files

SAM_RELATIVE = Path(".venv-sam/bin/sam")
SOURCE_KEY_PARAMETER = "TrainingSourceKey"
FALLBACK_SOURCE_KEY = "code/training/sourcedir.tar.gz"
_SKIP_DIRS = {"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache"}
_SKIP_SUFFIXES = {".pyc", ".pyo"}


@dataclass(frozen=True)
class SourceLocation:
    bucket: str
    key: str

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def _files(base: Path) -> Iterator[Path]:
    for path in sorted(base.rglob("*")):
        rel = path.relative_to(base)
        if any(part in _SKIP_DIRS for part in rel.parts) or path.suffix in _SKIP_SUFFIXES:
            continue
        if path.is_file():
            yield path


def source_entries(root: Path) -> list[tuple[str, Path]]:
    """(name in the tarball, file): training/* at the root, the "training" runtime set as medimage/."""
    training, package = root / "training", root / "src" / "medimage"
    if not (training / "train.py").is_file():
        raise DeployProblem(f"{training / 'train.py'} not found: run from a medimage checkout")
    if not (package / "__init__.py").is_file():
        raise DeployProblem(f"{package} is not the medimage package: run from a medimage checkout")
    entries = [(p.relative_to(training).as_posix(), p) for p in _files(training)]
    entries += list(runtime_files("training", package))
    return entries


def pack_training_source(root: Path, dest: Path) -> Path:
    """Write ``sourcedir.tar.gz`` for SageMaker script mode; returns ``dest``."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, path in source_entries(root):
            info = tarfile.TarInfo(name)
            data = path.read_bytes()
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    dest.parent.mkdir(parents=True, exist_ok=True)
    with dest.open("wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
        gz.write(buffer.getvalue())
    return dest


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def sam_executable(root: Path) -> Path:
    sam = root / SAM_RELATIVE
    if not os.access(sam, os.X_OK):
        raise DeployProblem(f"no SAM CLI at {SAM_RELATIVE}: run `make sam-install` first")
    return sam


def sam_commands(sam: Path, config_env: str, guided: bool, build: bool) -> list[list[str]]:
    commands = []
    if build:
        commands.append([str(sam), "build", "--config-env", config_env])
    deploy = [str(sam), "deploy", "--config-env", config_env]
    if guided:
        deploy.append("--guided")
    commands.append(deploy)
    return commands


def run_sam(root: Path, commands: Sequence[Sequence[str]]) -> None:
    """Run each SAM command in the checkout with its output on the terminal; stop at the first failure."""
    env = dict(os.environ, SAM_CLI_TELEMETRY="0")
    for command in commands:
        step = command[1]
        try:
            done = subprocess.run(list(command), cwd=root, env=env, check=False)
        except OSError as exc:
            raise DeployProblem(f"cannot run {command[0]}: {exc}") from exc
        if done.returncode != 0:
            raise DeployProblem(f"`sam {step}` failed (exit {done.returncode}); its output is above")


def template_source_key(root: Path) -> str:
    """The default of the template's TrainingSourceKey parameter."""
    try:
        from medimage.template_file import load_template
    except ImportError:  # pyyaml is in the local extra
        return FALLBACK_SOURCE_KEY
    template = load_template(root / "template.yaml")
    param = (template.get("Parameters") or {}).get(SOURCE_KEY_PARAMETER) or {}
    return str(param.get("Default") or FALLBACK_SOURCE_KEY)


def source_location(outputs: dict[str, str], root: Path) -> SourceLocation:
    """Where the deployed stack expects the tarball: its TrainingSourceUri output (which reflects any
    parameter override), else DataBucketName + the template default."""
    uri = outputs.get("TrainingSourceUri", "")
    if uri.startswith("s3://") and "/" in uri[5:]:
        bucket, key = uri[5:].split("/", 1)
        return SourceLocation(bucket, key)
    bucket = outputs.get("DataBucketName")
    if not bucket:
        raise DeployProblem("the stack has no DataBucketName output: is it a medimage stack?")
    return SourceLocation(bucket, template_source_key(root))


def upload_training_source(s3: Any, tarball: Path, where: SourceLocation) -> None:
    s3.upload_file(str(tarball), where.bucket, where.key, ExtraArgs={"ContentType": "application/gzip"})
