"""Fixtures of the inference tests: a real (tiny) TFLite model, moto S3, the handler and the events/ files.

The model is built and converted here with TensorFlow, once per session, so these tests do not depend
on the trainer; it follows the model directory contract of docs/CONTRACTS.md.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import io
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import numpy as np
import pytest
from moto import mock_aws
from PIL import Image

from harness.models import write_tiny_model_dir
from medimage.adapters.aws import reset_clients
from medimage.core.preprocess import PreprocessSpec
from medimage.local.account import CREDENTIALS, REGION
from medimage.local.functions import LambdaContext, load_handler_module

REPO = Path(__file__).resolve().parents[2]
EVENTS = REPO / "events"
BUCKET = "medimage-data-example"  # the bucket named in events/inference-sqs-*.json
DATASET = "chestxray2017"
LABELS = ["normal", "bacterial", "viral"]
SHARED_DATA = Path(os.environ.get("MEDIMAGE_SHARED_DATA", REPO.parent / "shared" / "data"))
FULLRES = SHARED_DATA / "chestxray2017-val-fullres"


def build_model_dir(
    out: Path,
    seed: int,
    image_size: int = 64,
    labels: list[str] = LABELS,
    explain: bool = True,
    review_threshold: float | None = None,
) -> Path:
    """A small CNN with seeded weights (``harness.models``, two convolutions), converted to float and int8
    TFLite by the trainer's own export (with the class-activation output unless ``explain`` is off), with
    model.keras, model.json and labels.txt."""
    import tensorflow as tf

    write_tiny_model_dir(
        out, labels, image_size=image_size, seed=seed, convs=2, explain=explain, keras_file=True
    )
    meta: dict[str, Any] = {
        "format_version": 1,
        "labels": labels,
        "preprocess": PreprocessSpec(image_size=image_size, channels=1).to_dict(),
        "model_file": "model.tflite",
        "float_model_file": "model.tflite",
        "int8_model_file": "model-int8.tflite",
        "outputs": {"model.tflite": "probabilities", "model-int8.tflite": "logits"},
        "preset": DATASET,
        "dataset": DATASET,
        "manifest_version": f"test-{seed}",
        "trained_at": "2026-11-25T00:00:00+00:00",
        "training_seconds": 0.0,
        "parameters": {"seed": seed, "note": "untrained test fixture"},
        "tensorflow_version": tf.__version__,
    }
    if review_threshold is not None:
        meta["review"] = {"threshold": review_threshold, "fitted_on": "validation"}
    (out / "model.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return out


@pytest.fixture(scope="session")
def model_v1(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_model_dir(tmp_path_factory.mktemp("model-v1"), seed=1)


@pytest.fixture(scope="session")
def model_without_maps(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model exported before class-activation maps existed: one output."""
    return build_model_dir(tmp_path_factory.mktemp("model-plain"), seed=1, explain=False)


@pytest.fixture(scope="session")
def model_v2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_model_dir(tmp_path_factory.mktemp("model-v2"), seed=2)


def jpeg_bytes(size: tuple[int, int] = (96, 80), seed: int = 0, quality: int = 90) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 255, (size[1], size[0]), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels, "L").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def fullres_images() -> list[Path]:
    return sorted(FULLRES.glob("*/*.jpeg")) if FULLRES.is_dir() else []


@pytest.fixture
def fullres_xray() -> Path:
    images = fullres_images()
    if not images:
        pytest.skip(f"no full-resolution X-rays at {FULLRES} (set MEDIMAGE_SHARED_DATA)")
    return images[0]


def load_event(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / name).read_text(encoding="utf-8"))


def api_event(
    body: str | bytes | None,
    content_type: str | None = "image/jpeg",
    query: dict[str, str] | None = None,
    method: str = "POST",
    path: str = "/predict",
) -> dict[str, Any]:
    """events/inference-api-predict-binary.json with another body; bytes are base64-encoded."""
    event = copy.deepcopy(load_event("inference-api-predict-binary.json"))
    if isinstance(body, bytes):
        event["body"], event["isBase64Encoded"] = base64.b64encode(body).decode("ascii"), True
    else:
        event["body"], event["isBase64Encoded"] = body, False
    for headers in (event["headers"], event["multiValueHeaders"]):
        headers.pop("Content-Type", None)
    if content_type:
        event["headers"]["Content-Type"] = content_type
        event["multiValueHeaders"]["Content-Type"] = [content_type]
    event["queryStringParameters"] = query
    event["multiValueQueryStringParameters"] = {k: [v] for k, v in query.items()} if query else None
    event["httpMethod"] = event["requestContext"]["httpMethod"] = method
    event["path"] = event["resource"] = event["requestContext"]["resourcePath"] = path
    return event


def publish(
    s3: Any,
    model_dir: Path,
    version: str,
    dataset: str = DATASET,
    payload: bytes | None = None,
    pointer_sha: str | None = None,
    bucket: str = BUCKET,
) -> dict[str, Any]:
    """Upload a model version and point production.json at it, as the promote step does.

    `payload` replaces the uploaded model bytes (a corrupt upload); `pointer_sha` the recorded hash.
    """
    prefix = f"models/{dataset}/{version}/"
    content = (model_dir / "model.tflite").read_bytes()
    sha = pointer_sha or hashlib.sha256(content).hexdigest()
    s3.put_object(
        Bucket=bucket, Key=prefix + "model.tflite", Body=payload if payload is not None else content
    )
    for name in ("model.json", "labels.txt"):
        s3.put_object(Bucket=bucket, Key=prefix + name, Body=(model_dir / name).read_bytes())
    entry = {
        "version": version,
        "model_sha256": sha,
        "model_key": prefix + "model.tflite",
        "promoted_at": time.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "metrics": {"accuracy": 0.9},
    }
    pointer = {"dataset": dataset, **entry, "history": [entry]}
    s3.put_object(Bucket=bucket, Key=f"models/{dataset}/production.json", Body=json.dumps(pointer).encode())
    return pointer


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Any]:
    for key in ("DATASETS", "MEDIMAGE_MODEL", "MAX_REQUEST_BYTES", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    env = {
        **CREDENTIALS,
        "AWS_DEFAULT_REGION": REGION,
        "DATA_BUCKET": BUCKET,
        "DEFAULT_DATASET": DATASET,
        "MODEL_CACHE_DIR": str(tmp_path / "model-cache"),
        "MODEL_CHECK_INTERVAL_S": "0",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_NAMESPACE": "medimage-test",
        "POWERTOOLS_SERVICE_NAME": "inference",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with mock_aws():
        reset_clients()  # boto3 clients are cached per process; these must be created inside the mock
        client = boto3.client("s3", region_name=REGION)
        client.create_bucket(Bucket=BUCKET)
        yield client
    reset_clients()


@pytest.fixture
def handler(s3: Any) -> ModuleType:
    """A fresh import of functions/inference/app.py: a new container, with empty caches."""
    return load_handler_module()


def json_lines(out: str) -> list[dict[str, Any]]:
    """The JSON log lines in captured stdout (the function's, in Lambda's JSON log format)."""
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def invoke(module: ModuleType, event: dict[str, Any]) -> dict[str, Any]:
    return module.lambda_handler(event, LambdaContext())


def call_api(module: ModuleType, event: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    response = invoke(module, event)
    return response["statusCode"], json.loads(response["body"])
