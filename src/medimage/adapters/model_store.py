"""S3 access of the inference function: the model registry, and the objects drop-to-label touches.

`S3ModelStore` is the `medimage.inference.ports.ModelSource` of the Lambda: it reads
``models/<dataset>/production.json`` and downloads a version's ``model.tflite`` (or whichever file the
pointer's ``model_key`` names), ``model.json`` and ``labels.txt`` to local disk (``/tmp`` in Lambda).
Drop-to-label's object access is `medimage.adapters.s3.S3ObjectStore`.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from medimage.adapters.aws import client as aws_client
from medimage.adapters.aws import is_not_found
from medimage.adapters.s3 import S3ObjectStore
from medimage.core.layout import production_pointer_key
from medimage.inference.model import LABELS_TXT, MODEL_JSON, ModelError
from medimage.inference.ports import ServingPointer


class S3ModelStore:
    def __init__(self, bucket: str, client: Any = None, cache_dir: str | Path | None = None) -> None:
        self.bucket = bucket
        self.client = client or aws_client("s3")
        self.cache_dir = Path(cache_dir or os.path.join(tempfile.gettempdir(), "medimage-models"))

    def read_pointer(self, dataset: str) -> dict[str, Any] | None:
        key = production_pointer_key(dataset)
        try:
            return S3ObjectStore(self.bucket, self.client).get_json(key)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ModelError(f"{key} is not valid JSON: {exc}") from None

    def download(self, pointer: ServingPointer) -> Path:
        """Download the version once per container; older versions of the dataset are removed from disk."""
        dataset_dir = self.cache_dir / pointer.dataset
        target = dataset_dir / f"{pointer.version}-{pointer.model_sha256[:12]}"
        if (target / pointer.model_file).is_file() and (target / MODEL_JSON).is_file():
            return target
        prefix = pointer.model_key.rsplit("/", 1)[0] + "/" if "/" in pointer.model_key else ""
        dataset_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=dataset_dir, prefix=".partial-"))
        try:
            for name in (pointer.model_file, MODEL_JSON, LABELS_TXT):
                try:
                    self.client.download_file(self.bucket, prefix + name, str(staging / name))
                except ClientError as exc:
                    if is_not_found(exc):
                        raise ModelError(f"s3://{self.bucket}/{prefix}{name} is missing") from None
                    raise
            for old in dataset_dir.iterdir():
                if old != staging:
                    shutil.rmtree(old, ignore_errors=True)
            staging.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return target
