"""`medimage deploy`: SAM build + deploy, then what the state machine trains with: the training source tarball
and the pretrained weights.

The Train state hands SageMaker ``sagemaker_submit_directory = s3://<bucket>/<TrainingSourceKey>``; the
tarball holds ``train.py`` (and ``requirements.txt``) at its root and the trainer's runtime set of the
``medimage`` package beside them (``medimage.runtime_sets``), which is where train.py looks for it. It is
built byte-for-byte reproducibly (sorted entries, fixed times and owners), so the same checkout always
uploads the same object.

Every job also gets the MobileNetV2 ImageNet weights as its ``pretrained`` channel (an S3Prefix on
``pretrained/mobilenet_v2/``), so a job without internet access can start from them: deploy uploads the
weights folder there (the ``.tflite`` checked against ``SHA256SUMS`` first, with its licence and labels),
skipping each object already there with the same SHA-256.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import subprocess
import tarfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from medimage.adapters.aws import is_not_found
from medimage.core.errors import DeployProblem
from medimage.core.layout import MOBILENET_V2_PREFIX
from medimage.runtime_sets import runtime_files
from medimage.training.pretrained import MOBILENET_V2_FILE, PRETRAINED_DIR_ENV

SAM_RELATIVE = Path(".venv-sam/bin/sam")
SOURCE_KEY_PARAMETER = "TrainingSourceKey"
FALLBACK_SOURCE_KEY = "code/training/sourcedir.tar.gz"
_SKIP_DIRS = {"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache"}
_SKIP_SUFFIXES = {".pyc", ".pyo"}
PRETRAINED_OPTION = "--pretrained-dir"
SUMS_FILE = "SHA256SUMS"
# What goes beside the weights: the digests, the Apache-2.0 licence they come under, the ImageNet labels.
PRETRAINED_FILES = (MOBILENET_V2_FILE, "LICENSE-Apache-2.0.txt", SUMS_FILE, "imagenet_labels.txt")
SHA256_METADATA = "sha256"


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


def sam_commands(
    sam: Path, config_env: str, guided: bool, build: bool, deploy_args: Sequence[str] = ()
) -> list[list[str]]:
    """``deploy_args`` go to `sam deploy` as they are (CI: --role-arn, --no-confirm-changeset)."""
    commands = []
    if build:
        commands.append([str(sam), "build", "--config-env", config_env])
    deploy = [str(sam), "deploy", "--config-env", config_env]
    if guided:
        deploy.append("--guided")
    commands.append(deploy + list(deploy_args))
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


@dataclass(frozen=True)
class StagedFile:
    key: str
    sha256: str
    uploaded: bool  # False: the same content was already there


def _pretrained_problem(what: str) -> DeployProblem:
    return DeployProblem(
        f"{what}: point ${PRETRAINED_DIR_ENV} or {PRETRAINED_OPTION} at the folder that holds "
        f"{MOBILENET_V2_FILE} and {SUMS_FILE} (../shared/data/pretrained)"
    )


def pretrained_dir(given: str | None, env: Mapping[str, str]) -> Path:
    """``--pretrained-dir``, else ``$MEDIMAGE_PRETRAINED_DIR``."""
    folder = given or env.get(PRETRAINED_DIR_ENV)
    if not folder:
        raise _pretrained_problem("no pretrained weights folder given")
    return Path(folder)


def _listed_digests(sums: Path) -> dict[str, str]:
    """``sha256sum`` output: ``<hex>  <name>`` (``*<name>`` in binary mode) per line."""
    digests = {}
    for line in sums.read_text(encoding="utf-8").splitlines():
        digest, _, name = line.strip().partition(" ")
        if digest and name:
            digests[name.strip().lstrip("*")] = digest.lower()
    return digests


def verified_pretrained(folder: Path) -> dict[str, str]:
    """SHA-256 of each file to upload, by name; the weights must be the ones ``SHA256SUMS`` lists."""
    if not folder.is_dir():
        raise _pretrained_problem(f"no pretrained weights folder at {folder}")
    missing = [name for name in PRETRAINED_FILES if not (folder / name).is_file()]
    if missing:
        raise _pretrained_problem(f"{folder} lacks {', '.join(missing)}")
    digests = {name: sha256_of(folder / name) for name in PRETRAINED_FILES}
    listed = _listed_digests(folder / SUMS_FILE).get(MOBILENET_V2_FILE)
    if listed is None:
        raise _pretrained_problem(f"{folder / SUMS_FILE} does not list {MOBILENET_V2_FILE}")
    actual = digests[MOBILENET_V2_FILE]
    if listed != actual:
        raise _pretrained_problem(
            f"{folder / MOBILENET_V2_FILE} has SHA-256 {actual}, {SUMS_FILE} says {listed}"
        )
    return digests


def _stored_sha256(s3: Any, bucket: str, key: str) -> str | None:
    try:
        head = s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if is_not_found(exc):
            return None
        raise
    return head.get("Metadata", {}).get(SHA256_METADATA)


def upload_pretrained(
    s3: Any, bucket: str, folder: Path, prefix: str = MOBILENET_V2_PREFIX
) -> list[StagedFile]:
    """Verify the weights folder, then put its files under ``prefix``; nothing is uploaded unless all of it
    verifies, and an object that already holds the same SHA-256 is left as it is."""
    digests = verified_pretrained(folder)
    staged = []
    for name in PRETRAINED_FILES:
        key, digest = prefix + name, digests[name]
        fresh = _stored_sha256(s3, bucket, key) != digest
        if fresh:
            s3.put_object(
                Bucket=bucket,
                Key=key,
                Body=(folder / name).read_bytes(),
                Metadata={SHA256_METADATA: digest},
                ContentType="application/octet-stream" if name.endswith(".tflite") else "text/plain",
            )
        staged.append(StagedFile(key, digest, fresh))
    return staged
