"""`medimage train --on sagemaker`: a SageMaker training job of a manifest version, from the SageMaker SDK.

The job's request is ``medimage.core.training_job``'s, the one the state machine's Train state sends. This
module finds what it needs (the bucket, the training role and the source tarball from the stack, the
manifest version and its preset from the bucket), then hands it to ``sagemaker_sdk.py``, which runs in the
SDK's own environment (``.venv-sagemaker``, made by ``make sagemaker-install``): there the SDK looks up
the training image for the region and instance type and a ``ModelTrainer`` launches the job.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medimage.adapters.s3 import S3ObjectStore
from medimage.checkout import INSTALLED_FROM, checkout_root
from medimage.core import training_job as job
from medimage.core.errors import AwsProblem, BadExecutionInput, ManifestProblem, SageMakerJobProblem
from medimage.core.layout import MOBILENET_V2_PREFIX
from medimage.core.objects import BadS3Uri, parse_s3_uri
from medimage.ops.manifests import ManifestChoice, find_manifest, unpacked_shards

SDK_VENV = ".venv-sagemaker"
SDK_PYTHON_ENV = "MEDIMAGE_SAGEMAKER_PYTHON"
SDK_SCRIPT = Path(__file__).with_name("sagemaker_sdk.py")
ROLE_ENV = "MEDIMAGE_SAGEMAKER_ROLE_ARN"
ROLE_OUTPUT = "SageMakerTrainingRoleArn"
SOURCE_OUTPUT = "TrainingSourceUri"
SOURCE_KEY_DEFAULT = "code/training/sourcedir.tar.gz"  # the template's TrainingSourceKey default


@dataclass(frozen=True)
class StackSettings:
    """What the job needs from the stack: the data bucket, the role SageMaker assumes, the source tarball."""

    bucket: str
    role_arn: str
    source_uri: str
    region: str


@dataclass(frozen=True)
class JobPlan:
    """One training job to launch: everything but the name and the image, which the SDK gives it."""

    manifest: ManifestChoice
    stack: StackSettings
    instance_type: str
    hyperparameters: dict[str, str]
    wait: bool
    shards: bool = False  # the channels are the version's TFRecord shards (FastFile), not its files

    def request(self, job_name: str = "", image_uri: str = "") -> dict[str, Any]:
        return job.create_training_job_request(
            job_name=job_name,
            role_arn=self.stack.role_arn,
            image_uri=image_uri,
            instance_type=self.instance_type,
            bucket=self.stack.bucket,
            dataset=self.manifest.dataset,
            manifest_prefix=self.manifest.prefix,
            hyperparameters=self.hyperparameters,
            shards=self.shards,
        )

    def sdk_spec(self) -> dict[str, Any]:
        """What sagemaker_sdk.py's ``launch`` reads."""
        request = self.request()
        del request["TrainingJobName"]
        del request["AlgorithmSpecification"]["TrainingImage"]
        return {
            "request": request,
            "job_name_base": job.sdk_job_name_base(self.manifest.version),
            "framework": {
                "name": job.FRAMEWORK,
                "version": job.FRAMEWORK_VERSION,
                "python": job.PYTHON_VERSION,
            },
            "region": self.stack.region,
            "wait": self.wait,
        }


@dataclass(frozen=True)
class LaunchResult:
    job_name: str
    status: str
    image: str
    model_artifacts: str
    request: dict[str, Any] = field(default_factory=dict)
    failure_reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "job_name": self.job_name,
            "status": self.status,
            "image": self.image,
            "model_artifacts": self.model_artifacts,
            "failure_reason": self.failure_reason,
            "request": self.request,
        }


def parse_hyperparameters(pairs: Iterable[str]) -> dict[str, str]:
    """``NAME=VALUE`` pairs (``-H``); the ``sagemaker_*`` script settings are not the user's to set."""
    values: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        name = name.strip().lstrip("-")
        if not sep or not name:
            raise SageMakerJobProblem(
                f"--hyperparameter {pair!r}: expected NAME=VALUE, e.g. -H epochs=30", "bad_hyperparameter"
            )
        values[name] = value.strip()
    reserved = sorted(k for k in values if k.startswith(job.SCRIPT_PREFIX))
    if reserved:
        raise SageMakerJobProblem(
            f"--hyperparameter {', '.join(reserved)}: the sagemaker_* script settings come from the stack",
            "bad_hyperparameter",
        )
    return values


def build_hyperparameters(
    manifest: ManifestChoice, stack: StackSettings, overrides: Mapping[str, str]
) -> dict[str, str]:
    try:
        return job.hyperparameters(
            manifest.dataset,
            manifest.preset,
            manifest.version,
            stack.source_uri,
            stack.region,
            overrides=overrides,
        )
    except BadExecutionInput as exc:
        raise SageMakerJobProblem(exc.message, "bad_hyperparameter") from None


def check_source(s3: Any, source_uri: str) -> None:
    """SageMaker would start the job and fail minutes later without the source tarball: say so now."""
    try:
        bucket, key = parse_s3_uri(source_uri)
    except BadS3Uri as exc:
        raise SageMakerJobProblem(f"training source: {exc.message}", "no_training_source") from None
    if not S3ObjectStore(bucket, s3).exists(key):
        raise SageMakerJobProblem(
            f"training source {source_uri} not found: `medimage deploy` uploads it (training/ and the "
            f"medimage package), or pass --source",
            "no_training_source",
        )


def check_pretrained(s3: Any, bucket: str) -> None:
    """The job's ``pretrained`` channel must hold something: SageMaker fails a job whose S3Prefix channel
    is empty, minutes after it starts."""
    if next(S3ObjectStore(bucket, s3).list_keys(MOBILENET_V2_PREFIX), None) is None:
        raise SageMakerJobProblem(
            f"no pretrained weights under s3://{bucket}/{MOBILENET_V2_PREFIX}: `medimage deploy` uploads "
            "them (from $MEDIMAGE_PRETRAINED_DIR or --pretrained-dir)",
            "no_pretrained_weights",
        )


def resolve_stack(
    bucket: str | None,
    role_arn: str | None,
    source_uri: str | None,
    region: str,
    outputs: Callable[[], dict[str, str]],
) -> StackSettings:
    """A flag, else an environment variable, else the stack output; ``outputs`` is called only when a
    value is still missing (a `medimage up` stack.json has the bucket but no role)."""
    from medimage.ops.stack import BUCKET_ENV

    bucket = bucket or os.environ.get(BUCKET_ENV)
    role_arn = role_arn or os.environ.get(ROLE_ENV)
    found: dict[str, str] = {}
    if not bucket or not role_arn or not source_uri:
        try:
            found = outputs()
        except AwsProblem as exc:
            if not role_arn:
                raise AwsProblem(f"{exc.message}; without a stack pass --role (and --bucket)") from exc
    bucket = bucket or found.get("DataBucketName")
    role_arn = role_arn or found.get(ROLE_OUTPUT)
    if not bucket:
        raise AwsProblem(f"no data bucket: pass --bucket or set ${BUCKET_ENV} (or deploy the stack)")
    if not role_arn:
        raise AwsProblem(f"no training role: pass --role or set ${ROLE_ENV} (the stack's {ROLE_OUTPUT})")
    source_uri = source_uri or found.get(SOURCE_OUTPUT) or f"s3://{bucket}/{SOURCE_KEY_DEFAULT}"
    return StackSettings(bucket=bucket, role_arn=role_arn, source_uri=source_uri, region=region)


def plan_job(
    *,
    dataset: str,
    manifest_version: str | None,
    preset: str | None,
    instance_type: str | None,
    overrides: Mapping[str, str],
    wait: bool,
    bucket: str | None,
    role_arn: str | None,
    source_uri: str | None,
    stack: str | None,
    config_env: str = "default",
    channels: str = "auto",
) -> JobPlan:
    """Everything the job needs, found and checked before the SDK is asked to launch it. ``channels``:
    ``auto`` trains a version with a shard plan from its shards and any other from its files; ``files``
    or ``shards`` asks for one (see ``shard_channels``)."""
    from medimage.ops.stack import aws_errors, client, stack_name, stack_outputs

    with aws_errors():
        settings = resolve_stack(
            bucket, role_arn, source_uri, region_name(), lambda: stack_outputs(stack_name(stack, config_env))
        )
        s3 = client("s3")
        manifest = find_manifest(S3ObjectStore(settings.bucket, s3), dataset, manifest_version, preset)
        check_source(s3, settings.source_uri)
        check_pretrained(s3, settings.bucket)
        shards = shard_channels(S3ObjectStore(settings.bucket, s3), manifest, channels)
    return JobPlan(
        manifest=manifest,
        stack=settings,
        instance_type=instance_type or job.DEFAULT_INSTANCE_TYPE,
        hyperparameters=build_hyperparameters(manifest, settings, overrides),
        wait=wait,
        shards=shards,
    )


CHANNEL_CHOICES = ("auto", "files", "shards")


def shard_channels(store: S3ObjectStore, manifest: ManifestChoice, channels: str) -> bool:
    """Whether the job reads the version's shards, as the Train state would: a version with a shard plan
    trains from its shards once they are all packed (the workflow's PackShards step packs them; this
    command does not), every other version from its files. ``files`` trains any version from its files."""
    if channels not in CHANNEL_CHOICES:
        raise ValueError(f"channels must be one of {', '.join(CHANNEL_CHOICES)}, got {channels!r}")
    if channels == "files":
        return False
    where = f"s3://{store.bucket}/{manifest.prefix}"
    if not manifest.shards:
        if channels == "shards":
            raise ManifestProblem(
                f"manifest version {manifest.version!r} has no shard plan ({where}shards.json): it is "
                "smaller than the stack's ShardThreshold and trains from its files",
                "no_shards",
            )
        return False
    missing = unpacked_shards(store, manifest)
    if missing:
        raise ManifestProblem(
            f"{len(missing)} of the {len(manifest.shards)} shards of manifest version {manifest.version!r} "
            f"are not packed yet ({where}shards/): `medimage pipeline start --dataset {manifest.dataset}` "
            "packs them and trains, or pass --channels files to train from the files",
            "shards_not_packed",
        )
    return True


def region_name() -> str:
    """The region of this process's AWS session (AWS_REGION, AWS_DEFAULT_REGION, the profile)."""
    import boto3
    from botocore.exceptions import NoRegionError

    from medimage.ops.stack import describe

    region = boto3.session.Session().region_name
    if not region:
        raise AwsProblem(describe(NoRegionError()))
    return str(region)


def sdk_python() -> Path:
    """The Python of the SageMaker SDK's environment: $MEDIMAGE_SAGEMAKER_PYTHON, else the checkout's
    .venv-sagemaker."""
    if os.environ.get(SDK_PYTHON_ENV):
        return Path(os.environ[SDK_PYTHON_ENV])
    for root in (checkout_root(), INSTALLED_FROM):
        if root is not None and (root / SDK_VENV / "bin" / "python").is_file():
            return root / SDK_VENV / "bin" / "python"
    raise SageMakerJobProblem(
        f"no SageMaker SDK environment ({SDK_VENV}): run `make sagemaker-install` in the checkout, or set "
        f"${SDK_PYTHON_ENV} to a Python with sagemaker-train",
        "sdk_missing",
    )


def run_sdk(command: str, payload: Any, on_line: Callable[[str], None], python: Path | None = None) -> Any:
    """Run ``sagemaker_sdk.py COMMAND`` in the SDK's environment, its output relayed line by line to
    ``on_line``; its JSON answer. AWS settings (endpoint, region, credentials) pass in the environment."""
    python = python or sdk_python()
    with tempfile.TemporaryDirectory(prefix="medimage-sagemaker-") as tmp:
        source, target = Path(tmp) / "in.json", Path(tmp) / "out.json"
        source.write_text(json.dumps(payload), encoding="utf-8")
        argv = [str(python), "-I", str(SDK_SCRIPT), command, str(source), str(target)]
        try:
            process = subprocess.Popen(
                argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=dict(os.environ)
            )
        except OSError as exc:
            raise SageMakerJobProblem(f"cannot run {python}: {exc}", "sdk_missing") from exc
        assert process.stdout is not None
        for line in process.stdout:
            on_line(line.rstrip("\n"))
        code = process.wait()
        if code != 0 or not target.is_file():
            raise SageMakerJobProblem(
                f"the SageMaker SDK step failed (exit {code}); its output is above", "sdk_failed"
            )
        return json.loads(target.read_text(encoding="utf-8"))


def launch(plan: JobPlan, on_line: Callable[[str], None], python: Path | None = None) -> LaunchResult:
    """Start the job with the SDK (and with ``plan.wait`` follow it to its end)."""
    answer = run_sdk("launch", plan.sdk_spec(), on_line, python)
    name = str(answer.get("job_name") or "")
    if not name:
        error = answer.get("error") or {}
        raise SageMakerJobProblem(
            f"the SageMaker SDK did not start the job: {error.get('code')}: {error.get('message')}",
            "sdk_failed",
        )
    result = LaunchResult(
        job_name=name,
        status=str(answer.get("status") or "Unknown"),
        image=str(answer.get("image") or ""),
        model_artifacts=str(
            answer.get("model_artifacts")
            or job.model_artifacts_uri(plan.stack.bucket, plan.manifest.dataset, name)
        ),
        request=dict(answer.get("request") or {}),
        failure_reason=answer.get("failure_reason"),
    )
    if result.status in ("Failed", "Stopped"):
        raise SageMakerJobProblem(
            f"training job {name} {result.status.lower()}: {result.failure_reason or 'no reason given'}",
            "job_failed",
        )
    if answer.get("error"):
        error = answer["error"]
        raise SageMakerJobProblem(
            f"training job {name} ({result.status}): {error.get('code')}: {error.get('message')}",
            "sdk_failed",
        )
    return result


def image_uris(
    query: list[dict[str, str]], on_line: Callable[[str], None], python: Path | None = None
) -> list[dict[str, str]]:
    """The SDK's training image for each ``{"region", "instance_type"}``, for the core's framework."""
    framework = {"name": job.FRAMEWORK, "version": job.FRAMEWORK_VERSION, "python": job.PYTHON_VERSION}
    answer = run_sdk("image-uris", {"query": query, "framework": framework}, on_line, python)
    return list(answer)
