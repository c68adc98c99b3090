"""Shared values and fixtures' helpers of tests/ops."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3

from medimage.core import training_job as job

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


def make_bucket(bucket: str, with_source: bool = True) -> Any:
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=bucket)
    if with_source:
        s3.put_object(Bucket=bucket, Key=SOURCE_KEY, Body=b"source tarball")
    return s3
