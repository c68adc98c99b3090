"""The SageMaker training job of a manifest version: one definition of its CreateTrainingJob request.

Two things start such a job: the state machine's Train state (``statemachine/training.asl.json``, with the
template's ``DefinitionSubstitutions``) and ``medimage train --on sagemaker`` (the SageMaker Python SDK).
Both send the request built here: the same channels, hyperparameters, script settings, output layout,
resources and metric definitions. tests/ops runs the ASL on moto's interpreter and the SDK against moto's
SageMaker API and compares what each sent with ``create_training_job_request``.

Job names differ only in their unique suffix: the ASL adds 8 hex digits of a UUID to the manifest version,
the SDK its launch time (``YYYYmmddHHMMSS``); either way the job name is the model's version.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from medimage.core.errors import BadExecutionInput
from medimage.core.layout import MOBILENET_V2_PREFIX, check_dataset_name
from medimage.core.shards import channel_prefix

# SageMaker script mode: the container's toolkit downloads sagemaker_submit_directory and runs the program.
ENTRY_POINT = "train.py"
CONTAINER_LOG_LEVEL = "20"
SCRIPT_PREFIX = "sagemaker_"
# The AWS Deep Learning Container the job runs in (framework, version, Python), CPU or GPU by instance type.
FRAMEWORK = "tensorflow"
FRAMEWORK_VERSION = "2.19.0"
PYTHON_VERSION = "py312"
# The template's default TrainingInstanceType; tests/ops checks that they agree. Epochs and starting
# weights are the preset's (its training.hyperparameters) unless the template or an execution sets them.
DEFAULT_INSTANCE_TYPE = "ml.m5.xlarge"
INSTANCE_COUNT = 1
VOLUME_SIZE_GB = 30
MAX_RUNTIME_S = 14400
INPUT_MODE = "File"
# A sharded version's channels: SageMaker presents the objects under the S3Prefix as files and reads them
# from S3 as they are opened, so training starts without copying the shards first.
SHARD_INPUT_MODE = "FastFile"
# model.tar.gz: the API's default, named so both senders send it (the SDK always does).
COMPRESSION = "GZIP"
# (channel name, manifest split): the trainer reads SM_CHANNEL_TRAIN, SM_CHANNEL_VALIDATION, SM_CHANNEL_TEST.
CHANNELS = (("train", "train"), ("validation", "val"), ("test", "test"))
# The ImageNet weights as a channel (SM_CHANNEL_PRETRAINED), so a job without internet access still has them.
PRETRAINED_CHANNEL = "pretrained"
# What train.py prints per epoch and at the end, as CloudWatch metrics of the job.
_NUMBER = r"([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"
METRICS = (
    ("train:loss", "loss"),
    ("train:accuracy", "accuracy"),
    ("validation:loss", "val_loss"),
    ("validation:calibrated_loss", "val_calibrated_loss"),
    ("validation:accuracy", "val_accuracy"),
    ("validation:macro_auc", "val_macro_auc"),
    ("test:accuracy", "test_accuracy"),
    ("test:macro_auc", "test_macro_auc"),
)
# SageMaker's job names: at most 63 of [A-Za-z0-9-], no leading or doubled-edge dash.
JOB_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
JOB_NAME_LIMIT = 63
# The SDK appends "-YYYYmmddHHMMSS" to the base name and cuts the whole at 63 characters.
SDK_SUFFIX_LENGTH = 15


def metric_definitions() -> list[dict[str, str]]:
    return [{"Name": name, "Regex": rf"\b{printed}={_NUMBER};"} for name, printed in METRICS]


def script_settings(source_uri: str, region: str) -> dict[str, str]:
    """The script-mode hyperparameters: where the source tarball is and which program to run."""
    return {
        "sagemaker_program": ENTRY_POINT,
        "sagemaker_submit_directory": source_uri,
        "sagemaker_region": region,
        "sagemaker_container_log_level": CONTAINER_LOG_LEVEL,
    }


def hyperparameters(
    dataset: str,
    preset: str,
    manifest_version: str,
    source_uri: str,
    region: str,
    epochs: int | str | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, str]:
    """The job's hyperparameters: what names the data, ``epochs`` when given (the template's TrainingEpochs;
    None or empty leaves the preset's), then ``overrides`` (as strings), then the script settings, which
    nothing overrides (an override named ``sagemaker_*`` is refused). Everything else is the preset's."""
    reserved = sorted(k for k in overrides or {} if k.startswith(SCRIPT_PREFIX))
    if reserved:
        raise BadExecutionInput(f"hyperparameters {reserved} are script settings, not overridable")
    values = {"preset": preset, "dataset": dataset, "manifest-version": manifest_version}
    if epochs is not None and str(epochs) != "":
        values["epochs"] = str(epochs)
    values.update({str(k): str(v) for k, v in (overrides or {}).items()})
    values.update(script_settings(source_uri, region))
    return values


def _channel(name: str, kind: str, uri: str, mode: str) -> dict[str, Any]:
    return {
        "ChannelName": name,
        "DataSource": {
            "S3DataSource": {"S3DataType": kind, "S3Uri": uri, "S3DataDistributionType": "FullyReplicated"}
        },
        "InputMode": mode,
    }


def input_data_config(bucket: str, manifest_prefix: str, shards: bool = False) -> list[dict[str, Any]]:
    """One channel per split, then the ``pretrained`` S3Prefix channel (every object under
    ``pretrained/mobilenet_v2/``, File mode). A split's channel is its ManifestFile in File mode (SageMaker
    copies each listed object to ``<channel dir>/<key>``), or, for a sharded version (``shards``), the
    S3Prefix of its TFRecord shards (``core.shards.channel_prefix``) in FastFile mode."""
    if shards:
        splits = [
            _channel(c, "S3Prefix", f"s3://{bucket}/{channel_prefix(manifest_prefix, s)}", SHARD_INPUT_MODE)
            for c, s in CHANNELS
        ]
    else:
        splits = [
            _channel(c, "ManifestFile", f"s3://{bucket}/{manifest_prefix}{s}.manifest", INPUT_MODE)
            for c, s in CHANNELS
        ]
    return [*splits, _channel(PRETRAINED_CHANNEL, "S3Prefix", pretrained_uri(bucket), INPUT_MODE)]


def pretrained_uri(bucket: str) -> str:
    """Where ``medimage deploy`` puts the MobileNetV2 ImageNet weights (the ``pretrained`` channel)."""
    return f"s3://{bucket}/{MOBILENET_V2_PREFIX}"


def output_path(bucket: str, dataset: str) -> str:
    """Jobs of a dataset write ``training/<dataset>/<job>/output/{model,output}.tar.gz``."""
    return f"s3://{bucket}/training/{check_dataset_name(dataset)}/"


def model_artifacts_uri(bucket: str, dataset: str, job_name: str) -> str:
    return f"{output_path(bucket, dataset)}{job_name}/output/model.tar.gz"


def sdk_job_name_base(manifest_version: str) -> str:
    """The name the SDK gives a job is this base plus its launch time; refused when SageMaker would refuse
    the result or cut the time off."""
    if len(manifest_version) > JOB_NAME_LIMIT - SDK_SUFFIX_LENGTH or not JOB_NAME.match(manifest_version):
        raise BadExecutionInput(
            f"manifest version {manifest_version!r} cannot start a training job name: at most "
            f"{JOB_NAME_LIMIT - SDK_SUFFIX_LENGTH} of letters, digits and single dashes"
        )
    return manifest_version


def create_training_job_request(
    *,
    job_name: str,
    role_arn: str,
    image_uri: str,
    instance_type: str,
    bucket: str,
    dataset: str,
    manifest_prefix: str,
    hyperparameters: Mapping[str, str],
    shards: bool = False,
) -> dict[str, Any]:
    """The CreateTrainingJob request of one job, as the Train state and the SDK send it (``shards``: the
    version has a shard plan and trains from its TFRecord shards)."""
    return {
        "TrainingJobName": job_name,
        "RoleArn": role_arn,
        "AlgorithmSpecification": {
            "TrainingImage": image_uri,
            "TrainingInputMode": INPUT_MODE,
            "MetricDefinitions": metric_definitions(),
        },
        "HyperParameters": dict(hyperparameters),
        "InputDataConfig": input_data_config(bucket, manifest_prefix, shards),
        "OutputDataConfig": {"S3OutputPath": output_path(bucket, dataset), "CompressionType": COMPRESSION},
        "ResourceConfig": {
            "InstanceCount": INSTANCE_COUNT,
            "InstanceType": instance_type,
            "VolumeSizeInGB": VOLUME_SIZE_GB,
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": MAX_RUNTIME_S},
    }
