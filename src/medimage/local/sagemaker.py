"""A local SageMaker for the training workflow: ``LocalSageMaker`` takes a CreateTrainingJob request and
runs it as SageMaker would, so the deployed ASL's training task needs no cloud.

It validates the request, downloads each channel from the emulated S3 as File mode does (a ManifestFile
channel's listed keys to ``<channel dir>/<key>``, an S3Prefix channel's objects to ``<channel dir>/<key
below the prefix>``; a FastFile channel shows the trainer the same files, which SageMaker reads from S3
as they are opened, so it is downloaded the same way: a sharded version's ``.tfrecord`` files), runs
``training/train.py`` under the script-mode contract (``medimage.training.runner``), uploads
``model.tar.gz`` and ``output.tar.gz`` to ``<S3OutputPath>/<job>/output/`` and keeps a
DescribeTrainingJob-shaped description (``Completed``, or ``Failed`` with the reason). How the Step
Functions interpreter reaches it is in ``moto_patches``.

An S3Prefix channel with no object under its prefix fails the job, as on SageMaker, unless its name is in
``optional_channels``: such a channel is then left out (no ``SM_CHANNEL_<NAME>``), which is how a local
stack without the ImageNet weights still trains (``LocalAws.running``).
"""

from __future__ import annotations

import io
import json
import re
import shutil
import tarfile
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import boto3
from botocore.exceptions import ClientError

from medimage.core.objects import BadS3Uri, parse_s3_uri
from medimage.local.account import ACCOUNT, REGION

_JOB_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
# Pipe mode streams a channel through a FIFO, which the trainer does not read.
_LOCAL_INPUT_MODES = frozenset({"File", "FastFile"})


class TrainingOutcome(Protocol):
    """What ``medimage.training.runner.run_train_script`` returns (``TrainingRun``)."""

    @property
    def ok(self) -> bool: ...

    seconds: float
    metrics: dict[str, float]
    failure_reason: str | None


Trainer = Callable[[dict[str, Path], dict[str, str], Path, Path], TrainingOutcome]


def run_train_py(
    channels: dict[str, Path], hyperparameters: dict[str, str], model_dir: Path, output_data_dir: Path
) -> TrainingOutcome:
    """The default trainer: the real training/train.py in a subprocess, as the container runs it."""
    from medimage.training.runner import run_train_script

    return run_train_script(channels, hyperparameters, model_dir, output_data_dir)


class TrainingJobError(Exception):
    """A CreateTrainingJob request SageMaker itself would refuse (surfaces as a SageMaker.* error)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class EmptyChannel(Exception):
    """An S3Prefix channel with nothing under its prefix: SageMaker fails such a job while downloading."""

    def __init__(self, uri: str) -> None:
        super().__init__(f'No S3 objects found under S3 URL "{uri}" given in input data source.')


def _epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


@dataclass
class LocalSageMaker:
    """The training jobs of one local session: runs them and keeps their descriptions."""

    trainer: Trainer = run_train_py
    region: str = REGION
    account: str = ACCOUNT
    work_dir: Path | None = None
    optional_channels: frozenset[str] = frozenset()
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def create_training_job(self, request: dict[str, Any]) -> dict[str, Any]:
        name = str(request.get("TrainingJobName", ""))
        if not _JOB_NAME.match(name):
            raise TrainingJobError(
                "ValidationException",
                f"training job name '{name}' must match {_JOB_NAME.pattern} (at most 63 characters)",
            )
        hyperparameters = request.get("HyperParameters") or {}
        bad = sorted(k for k, v in hyperparameters.items() if not isinstance(v, str))
        if bad:
            raise TrainingJobError("ValidationException", f"hyperparameter values must be strings: {bad}")
        for required in (
            "RoleArn",
            "AlgorithmSpecification",
            "OutputDataConfig",
            "ResourceConfig",
            "StoppingCondition",
        ):
            if required not in request:
                raise TrainingJobError("ValidationException", f"CreateTrainingJob needs {required}")
        with self._lock:
            if name in self.jobs:
                raise TrainingJobError("ResourceInUse", f"training job {name} already exists")
            self.jobs[name] = {"TrainingJobName": name, "TrainingJobStatus": "InProgress"}
        self.jobs[name] = self._run(name, request, hyperparameters)
        return {"TrainingJobArn": self.jobs[name]["TrainingJobArn"]}

    def describe_training_job(self, name: str) -> dict[str, Any]:
        return self.jobs[name]

    def _run(self, name: str, request: dict[str, Any], hyperparameters: dict[str, str]) -> dict[str, Any]:
        s3 = boto3.client("s3", region_name=self.region)
        created = datetime.now(UTC)
        output_path = str(request["OutputDataConfig"]["S3OutputPath"]).rstrip("/")
        description: dict[str, Any] = {
            "TrainingJobName": name,
            "TrainingJobArn": f"arn:aws:sagemaker:{self.region}:{self.account}:training-job/{name.lower()}",
            "HyperParameters": hyperparameters,
            "AlgorithmSpecification": request["AlgorithmSpecification"],
            "RoleArn": request["RoleArn"],
            "InputDataConfig": request.get("InputDataConfig", []),
            "OutputDataConfig": request["OutputDataConfig"],
            "ResourceConfig": request["ResourceConfig"],
            "StoppingCondition": request["StoppingCondition"],
            "CreationTime": _epoch_ms(created),
            "TrainingStartTime": _epoch_ms(created),
        }
        work = Path(tempfile.mkdtemp(prefix=f"sm-{name}-", dir=self.work_dir))
        try:
            try:
                channels = self._download_channels(s3, request.get("InputDataConfig", []), work / "input")
            except ClientError as exc:
                return self._finish(description, "Failed", f"ClientError: cannot download a channel: {exc}")
            except EmptyChannel as exc:
                return self._finish(description, "Failed", f"ClientError: Data download failed: {exc}")
            model_dir, output_dir = work / "model", work / "output" / "data"
            script_args = {k: v for k, v in hyperparameters.items() if not k.startswith("sagemaker_")}
            outcome = self.trainer(channels, script_args, model_dir, output_dir)
            description["TrainingTimeInSeconds"] = description["BillableTimeInSeconds"] = int(outcome.seconds)
            now = _epoch_ms(datetime.now(UTC))
            description["FinalMetricDataList"] = [
                {"MetricName": k, "Value": v, "Timestamp": now} for k, v in sorted(outcome.metrics.items())
            ]
            if not outcome.ok:
                return self._finish(description, "Failed", f"AlgorithmError: {outcome.failure_reason}")
            bucket, prefix = _split_s3(f"{output_path}/{name}/output/")
            for archive, folder in (("model.tar.gz", model_dir), ("output.tar.gz", output_dir)):
                s3.put_object(Bucket=bucket, Key=prefix + archive, Body=_tar_gz(folder))
            description["ModelArtifacts"] = {"S3ModelArtifacts": f"s3://{bucket}/{prefix}model.tar.gz"}
            return self._finish(description, "Completed", None)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def _download_channels(self, s3: Any, config: list[dict[str, Any]], input_dir: Path) -> dict[str, Path]:
        """Each channel's folder by name; an empty optional channel is left out."""
        channels: dict[str, Path] = {}
        for channel in config:
            name = channel["ChannelName"]
            try:
                channels[name] = self._download_channel(s3, channel, input_dir / name)
            except EmptyChannel:
                if name not in self.optional_channels:
                    raise
        return channels

    @staticmethod
    def _download_channel(s3: Any, channel: dict[str, Any], target: Path) -> Path:
        """A channel as SageMaker's File mode delivers it: a ManifestFile's listed keys at
        ``<channel dir>/<key>``, an S3Prefix's objects at ``<channel dir>/<key below the prefix>``."""
        source = channel["DataSource"]["S3DataSource"]
        kind = source.get("S3DataType")
        mode = channel.get("InputMode", "File")
        if mode not in _LOCAL_INPUT_MODES:
            raise TrainingJobError(
                "ValidationException",
                f"channel {channel['ChannelName']}: local training takes File and FastFile "
                f"channels, not {mode}",
            )
        if kind == "S3Prefix":
            return _download_prefix(s3, source["S3Uri"], target)
        if kind != "ManifestFile":
            raise TrainingJobError(
                "ValidationException", "local training takes ManifestFile and S3Prefix channels only"
            )
        bucket, key = _split_s3(source["S3Uri"])
        entries = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        prefix_bucket, prefix = _split_s3(entries[0]["prefix"])
        target.mkdir(parents=True, exist_ok=True)
        for relative in entries[1:]:
            path = target / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(s3.get_object(Bucket=prefix_bucket, Key=prefix + relative)["Body"].read())
        return target

    @staticmethod
    def _finish(description: dict[str, Any], status: str, reason: str | None) -> dict[str, Any]:
        end = _epoch_ms(datetime.now(UTC))
        description.update(
            {
                "TrainingJobStatus": status,
                "SecondaryStatus": status,
                "TrainingEndTime": end,
                "LastModifiedTime": end,
            }
        )
        if reason:
            description["FailureReason"] = reason[:1024]
        return description


def _download_prefix(s3: Any, uri: str, target: Path) -> Path:
    """Every object whose key starts with the URI's prefix, at its path below the prefix's last ``/``."""
    bucket, prefix = _split_s3(uri)
    base = prefix[: prefix.rfind("/") + 1]
    count = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            key = item["Key"]
            if key.endswith("/"):  # a console "folder" marker holds no data
                continue
            path = target / key[len(base) :]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
            count += 1
    if not count:
        raise EmptyChannel(uri)
    return target


def _split_s3(uri: str) -> tuple[str, str]:
    """SageMaker's answer to a bad URI in a request: a ValidationException."""
    try:
        return parse_s3_uri(uri, key_required=False)
    except BadS3Uri as exc:
        raise TrainingJobError("ValidationException", exc.message) from None


def _tar_gz(folder: Path) -> bytes:
    """Pack a folder's content at the archive root, as SageMaker packs SM_MODEL_DIR."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        if folder.exists():
            for path in sorted(folder.rglob("*")):
                tar.add(path, arcname=path.relative_to(folder).as_posix(), recursive=False)
    return buffer.getvalue()
