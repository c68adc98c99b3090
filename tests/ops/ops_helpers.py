"""Shared values and fixtures' helpers of tests/ops."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import boto3

from medimage.core import training_job as job
from medimage.core.layout import MOBILENET_V2_PREFIX
from medimage.training.pretrained import MOBILENET_V2_FILE

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "template.yaml"
REGION = "us-east-1"
ROLE_ARN = "arn:aws:iam::123456789012:role/medimage-sagemaker-training"
DATASET = "chestxray2017"
PRESET = "chestxray2017-binary"
VERSION = "20261125T190500Z-1a2b3c4d"
SOURCE_KEY = "code/training/sourcedir.tar.gz"


def put_manifest_version(s3: Any, bucket: str, dataset: str = DATASET, version: str = VERSION) -> str:
    """A manifest version as the split function leaves it (the three ManifestFile channels, stats.json
    naming the preset, latest.json pointing at it); its prefix."""
    prefix = f"manifests/{dataset}/{version}/"
    for _, split in job.CHANNELS:
        body = [{"prefix": f"s3://{bucket}/"}, f"incoming/labeled/{dataset}/NORMAL/{split}-1.jpeg"]
        s3.put_object(Bucket=bucket, Key=f"{prefix}{split}.manifest", Body=json.dumps(body).encode())
    s3.put_object(Bucket=bucket, Key=f"{prefix}stats.json", Body=json.dumps({"preset": PRESET}).encode())
    s3.put_object(
        Bucket=bucket,
        Key=f"manifests/{dataset}/latest.json",
        Body=json.dumps({"version": version}).encode(),
    )
    return prefix


def make_bucket(bucket: str, with_source: bool = True, with_weights: bool = True) -> Any:
    """A data bucket as `medimage deploy` leaves it: the source tarball and the pretrained weights."""
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=bucket)
    if with_source:
        s3.put_object(Bucket=bucket, Key=SOURCE_KEY, Body=b"source tarball")
    if with_weights:
        s3.put_object(Bucket=bucket, Key=f"{MOBILENET_V2_PREFIX}weights.tflite", Body=b"weights")
    return s3


def pretrained_folder(
    folder: Path, weights: bytes = b"mobilenet weights", listed: bytes | None = None
) -> Path:
    """A pretrained folder laid out as ../shared/data/pretrained: SHA256SUMS lists the digest of ``listed``
    (default: the weights themselves) and of a second model that is not the trainer's."""
    folder.mkdir(parents=True)
    (folder / MOBILENET_V2_FILE).write_bytes(weights)
    (folder / "LICENSE-Apache-2.0.txt").write_text("Apache License 2.0\n")
    (folder / "imagenet_labels.txt").write_text("background\ntench\n")
    (folder / "other.tflite").write_bytes(b"another model")
    digest = hashlib.sha256(weights if listed is None else listed).hexdigest()
    other = hashlib.sha256(b"another model").hexdigest()
    (folder / "SHA256SUMS").write_text(f"{other}  other.tflite\n{digest}  {MOBILENET_V2_FILE}\n")
    return folder
