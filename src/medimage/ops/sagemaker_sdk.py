"""The SageMaker Python SDK side of `medimage train --on sagemaker`, run by .venv-sagemaker's Python.

The SDK (v3, ``sagemaker-train``) cannot be installed beside the project's pins (docs/decisions.md), so
``medimage.ops.sagemaker_training`` runs this file with that environment's Python. It imports only the
standard library and the SDK. Commands (JSON in and out):

``launch SPEC RESULT``: ``SPEC`` holds a CreateTrainingJob request without its name and image (as
``medimage.core.training_job`` builds it), the base of the job name and the framework of the image; the
image comes from the SDK's lookup for the region and instance type, and a ``ModelTrainer`` starts the job
(and with ``wait`` follows it, its CloudWatch log on stdout). ``RESULT`` receives the job's name, status,
model location and the CreateTrainingJob request exactly as the SDK sent it.

``image-uris QUERY``: the SDK's training image URI for each ``{"region", "instance_type"}`` of ``QUERY``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from pathlib import Path
from typing import Any

# The SDK's own check of the role simulates VPC network-interface actions on "*", which the stack's
# least-privilege training role does not have (its jobs run outside a VPC): it would refuse a working role.
os.environ.setdefault("SAGEMAKER_VALIDATE_ROLE", "false")
# No usage reports from a medical data pipeline (and none from tests).
SDK_CONFIG = {"SchemaVersion": "1.0", "SageMaker": {"PythonSDK": {"Modules": {"TelemetryOptOut": True}}}}


def image_uri(framework: dict[str, str], region: str, instance_type: str) -> str:
    """The AWS Deep Learning Container for the framework version, region and instance type (CPU/GPU)."""
    from sagemaker.core import image_uris

    return str(
        image_uris.retrieve(
            framework["name"],
            region,
            version=framework["version"],
            py_version=framework["python"],
            instance_type=instance_type,
            image_scope="training",
        )
    )


def _trainer(spec: dict[str, Any], image: str, boto_session: Any) -> tuple[Any, list[Any]]:
    from sagemaker.core.helper.session_helper import Session
    from sagemaker.core.shapes import Channel, DataSource, MetricDefinition, S3DataSource
    from sagemaker.train import ModelTrainer
    from sagemaker.train.configs import Compute, OutputDataConfig, StoppingCondition

    request = spec["request"]
    algorithm, resources = request["AlgorithmSpecification"], request["ResourceConfig"]
    trainer = ModelTrainer(
        training_image=image,
        training_input_mode=algorithm["TrainingInputMode"],
        role=request["RoleArn"],
        base_job_name=spec["job_name_base"],
        compute=Compute(
            instance_type=resources["InstanceType"],
            instance_count=resources["InstanceCount"],
            volume_size_in_gb=resources["VolumeSizeInGB"],
        ),
        stopping_condition=StoppingCondition(
            max_runtime_in_seconds=request["StoppingCondition"]["MaxRuntimeInSeconds"]
        ),
        output_data_config=OutputDataConfig(
            s3_output_path=request["OutputDataConfig"]["S3OutputPath"],
            compression_type=request["OutputDataConfig"]["CompressionType"],
        ),
        hyperparameters=dict(request["HyperParameters"]),
        sagemaker_session=Session(boto_session=boto_session, sagemaker_config=SDK_CONFIG),
    ).with_metric_definitions(
        [MetricDefinition(name=m["Name"], regex=m["Regex"]) for m in algorithm["MetricDefinitions"]]
    )
    channels = [
        Channel(
            channel_name=c["ChannelName"],
            data_source=DataSource(
                s3_data_source=S3DataSource(
                    s3_data_type=c["DataSource"]["S3DataSource"]["S3DataType"],
                    s3_uri=c["DataSource"]["S3DataSource"]["S3Uri"],
                    s3_data_distribution_type=c["DataSource"]["S3DataSource"]["S3DataDistributionType"],
                )
            ),
            input_mode=c["InputMode"],
        )
        for c in request["InputDataConfig"]
    ]
    return trainer, channels


def _error(exc: BaseException) -> dict[str, str]:
    response = getattr(exc, "response", None)
    if isinstance(response, dict) and response.get("Error"):
        err = response["Error"]
        return {"code": str(err.get("Code", type(exc).__name__)), "message": str(err.get("Message", exc))}
    return {"code": type(exc).__name__, "message": str(exc)}


def launch(spec: dict[str, Any]) -> dict[str, Any]:
    import boto3
    from sagemaker.core.resources import TrainingJob

    region = spec["region"]
    boto_session = boto3.Session(region_name=region)
    sent: list[dict[str, Any]] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        sent.append(json.loads(json.dumps(params, default=str)))

    # Every client the SDK makes from this session reports the CreateTrainingJob request it sends.
    boto_session.events.register("provide-client-params.sagemaker.CreateTrainingJob", record)
    result: dict[str, Any] = {"ok": False}
    try:
        result["image"] = image = spec.get("image_uri") or image_uri(
            spec["framework"], region, spec["request"]["ResourceConfig"]["InstanceType"]
        )
        trainer, channels = _trainer(spec, image, boto_session)
        trainer.train(input_data_config=channels, wait=bool(spec["wait"]), logs=bool(spec["wait"]))
    except Exception as exc:
        result["error"] = _error(exc)
    if sent:
        result["request"] = sent[-1]
        result["job_name"] = name = sent[-1]["TrainingJobName"]
        try:
            job = TrainingJob.get(training_job_name=name, session=boto_session, region=region)
            result["status"] = str(job.training_job_status)
            artifacts = getattr(job.model_artifacts, "s3_model_artifacts", None)
            if isinstance(artifacts, str) and artifacts.startswith("s3://"):
                result["model_artifacts"] = artifacts
            reason = getattr(job, "failure_reason", None)
            if isinstance(reason, str):
                result["failure_reason"] = reason
        except Exception as exc:
            result.setdefault("error", _error(exc))
    result["ok"] = "error" not in result
    return result


def image_uris(query: list[dict[str, str]], framework: dict[str, str]) -> list[dict[str, str]]:
    return [{**q, "image_uri": image_uri(framework, q["region"], q["instance_type"])} for q in query]


class _PlainText(logging.Formatter):
    """The SDK's messages without their rich markup; the job's own log lines as they are."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return text if getattr(record, "markup", True) is False else re.sub(r"\[/?bold\]", "", text)


def main(argv: list[str]) -> int:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(_PlainText("%(message)s"))
    logging.basicConfig(level=logging.WARNING, handlers=[handler])
    logging.getLogger("sagemaker").setLevel(logging.INFO)
    command, source, target = argv[0], Path(argv[1]), Path(argv[2])
    spec = json.loads(source.read_text(encoding="utf-8"))
    if command == "launch":
        answer: Any = launch(spec)
    elif command == "image-uris":
        answer = image_uris(spec["query"], spec["framework"])
    else:
        print(f"unknown command {command!r}: launch | image-uris", file=sys.stderr)
        return 2
    target.write_text(json.dumps(answer, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
