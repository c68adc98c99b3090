"""A training job on a version's shards and one on its files see the same examples: the local SageMaker
delivers each request's channels (FastFile S3Prefix of the shards, or ManifestFile copies of the images),
and the trainer's one tf.data path reads the same number of images with the same label counts from both."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest

from medimage.adapters.s3 import S3ObjectStore
from medimage.core import training_job as job
from medimage.core.preprocess import PreprocessSpec
from medimage.core.shards import ShardSpec
from medimage.local.account import ACCOUNT, REGION
from medimage.local.sagemaker import LocalSageMaker
from medimage.services.pack import ShardPacker
from medimage.training.data import load_channel, shard_files
from tests.orchestration.shard_helpers import DATASET, manifest_prefix, put_sharded_version

BUCKET = "medimage-shard-jobs"
VERSION = "20261201T000000Z-0c0ffee0"
SPEC = PreprocessSpec(image_size=16, channels=1)


@dataclass(frozen=True)
class Outcome:
    ok: bool = True
    seconds: float = 0.0
    metrics: dict[str, float] = field(default_factory=dict)
    failure_reason: str | None = None


@dataclass
class LoadingTrainer:
    """Loads every split channel as the trainer does and keeps what it read (per job, in order)."""

    jobs: list[dict[str, Any]] = field(default_factory=list)

    def __call__(
        self, channels: dict[str, Path], hyperparameters: Any, model_dir: Path, out: Path
    ) -> Outcome:
        seen = {}
        for name, _ in job.CHANNELS:
            loaded = load_channel(name, channels[name], SPEC)
            seen[name] = {
                "sharded": bool(shard_files(channels[name])),
                "count": len(loaded),
                "labels": Counter(loaded.labels),
                "pixels": loaded.x,
            }
        self.jobs.append(seen)
        model_dir.mkdir(parents=True, exist_ok=True)
        return Outcome()


@pytest.fixture
def s3() -> Iterator[Any]:
    from moto import mock_aws

    from medimage.adapters.aws import reset_clients

    with mock_aws():
        reset_clients()
        client = boto3.client("s3", region_name=REGION)
        client.create_bucket(Bucket=BUCKET)
        yield client
        reset_clients()


def request(name: str, shards: bool) -> dict[str, Any]:
    return job.create_training_job_request(
        job_name=name,
        role_arn=f"arn:aws:iam::{ACCOUNT}:role/medimage-sagemaker",
        image_uri="training-image",
        instance_type=job.DEFAULT_INSTANCE_TYPE,
        bucket=BUCKET,
        dataset=DATASET,
        manifest_prefix=manifest_prefix(VERSION),
        hyperparameters=job.hyperparameters(DATASET, DATASET, VERSION, "s3://source", REGION),
        shards=shards,
    )


def test_a_job_on_shards_and_a_job_on_files_read_the_same_examples(s3):
    plan = put_sharded_version(s3, BUCKET, VERSION, shard_bytes=2500, per_class=10)
    packer = ShardPacker(S3ObjectStore(BUCKET, s3))
    assert {packer.pack(manifest_prefix(VERSION), ShardSpec.from_dict(s)).status for s in plan} == {"written"}
    trainer = LoadingTrainer()
    sagemaker = LocalSageMaker(trainer=trainer, optional_channels=frozenset({job.PRETRAINED_CHANNEL}))

    for name, shards in (("on-shards", True), ("on-files", False)):
        sagemaker.create_training_job(request(name, shards))
        described = sagemaker.describe_training_job(name)
        assert described["TrainingJobStatus"] == "Completed", described.get("FailureReason")

    on_shards, on_files = trainer.jobs
    for name, _ in job.CHANNELS:
        assert on_shards[name]["sharded"] and not on_files[name]["sharded"]
        assert on_shards[name]["count"] == on_files[name]["count"] > 0
        assert on_shards[name]["labels"] == on_files[name]["labels"]
        assert np.array_equal(on_shards[name]["pixels"], on_files[name]["pixels"])
    assert len([s for s in plan if s["split"] == "train"]) > 1  # the train channel spans several shards
