"""Fixtures of the guarantee tests: moto in-process, a small model registry lab, and the tiny TFLite model
of the trainer that stands in for train.py (``harness.faults.trainer``) so the Step Functions runs take
seconds."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest

from harness.faults.audit import PipelineAuditor
from harness.models import tiny_tflite_model
from medimage.adapters.aws import reset_clients
from medimage.adapters.registry_store import S3RegistryStore
from medimage.adapters.s3 import S3ObjectStore
from medimage.core import layout
from medimage.core.executions import TrainingResult
from medimage.local.account import REGION
from medimage.services.promote import PromoteRequest, PromoteService
from tests.fakes import InMemoryArtifacts

os.environ.setdefault("MEDIMAGE_TF_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

BUCKET = "medimage-faults-test"
DATASET = "chest"
LABELS = ["normal", "pneumonia"]


@pytest.fixture
def bucket() -> Iterator[Any]:
    """An S3 client on moto with ``BUCKET`` created (versioned: a rewrite of a key leaves two versions)."""
    from moto import mock_aws

    with mock_aws():
        reset_clients()
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET)
        s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        yield s3
    reset_clients()


def job_uri(version: str) -> str:
    return f"s3://{BUCKET}/training/{DATASET}/{version}/output/model.tar.gz"


@dataclass
class ModelLab:
    """Trained versions (model.tar.gz members + a passed gate.json) and the promote service on moto S3."""

    artifacts: InMemoryArtifacts = field(default_factory=InMemoryArtifacts)

    @property
    def store(self) -> S3ObjectStore:
        return S3ObjectStore(BUCKET)

    def trained(self, version: str, champion: str | None, accuracy: float = 0.9) -> PromoteRequest:
        model = f"model bytes of {version}".encode()
        self.artifacts.outputs[job_uri(version)] = {
            "model.tflite": model,
            "labels.txt": "\n".join(LABELS).encode(),
            "evaluation.json": json.dumps({"test": {"accuracy": accuracy}}).encode(),
            "model.json": json.dumps({"labels": LABELS, "model_file": "model.tflite"}).encode(),
        }
        metrics = {"manifest_version": "m1", "accuracy": accuracy, "recall": {}, "labels": LABELS, "n": 10}
        gate = {
            "passed": True,
            "metrics": metrics,
            "champion": None if champion is None else {"version": champion},
        }
        self.store.put_json(layout.model_prefix(DATASET, version) + "gate.json", gate)
        return PromoteRequest(DATASET, BUCKET, TrainingResult(version, "Completed", job_uri(version), []))

    def promoter(self) -> PromoteService:
        """A service with clients of its own (made now: after any hook a test registered)."""
        return PromoteService(self.store, S3RegistryStore(BUCKET, sleep=lambda _: None), self.artifacts)

    def registry(self) -> S3RegistryStore:
        return S3RegistryStore(BUCKET, sleep=lambda _: None)

    def pointer(self) -> dict[str, Any]:
        return self.store.get_json(layout.production_pointer_key(DATASET))

    def production_problems(self) -> list[str]:
        auditor = PipelineAuditor(boto3.client("s3", region_name=REGION), None, BUCKET, "")
        return auditor.production(DATASET)[1]


@pytest.fixture
def lab(bucket: Any) -> ModelLab:
    return ModelLab()


# ------------------------------------------------------------------------------------ a quick trainer
@pytest.fixture(scope="session")
def tiny_tflite() -> bytes:
    """A real, untrained 2-class TFLite model on 32x32 gray input (softmax output), made once."""
    return tiny_tflite_model(tuple(LABELS))
