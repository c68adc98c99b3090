"""A SageMaker job's ``model.tar.gz`` (the packed ``SM_MODEL_DIR``), read from S3 into memory."""

from __future__ import annotations

import io
import tarfile
from typing import Any
from urllib.parse import urlparse

from medimage.adapters.aws import client
from medimage.adapters.transient import transient_aws_errors
from medimage.core.errors import MedimageError


class BadModelArtifacts(MedimageError):
    code = "bad_model_artifacts"


def parse_s3_uri(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc or not parsed.path.strip("/"):
        raise BadModelArtifacts(f"'{uri}' is not an s3://bucket/key URI")
    return parsed.netloc, parsed.path.lstrip("/")


def read_tar_members(data: bytes) -> dict[str, bytes]:
    """Regular files of a (gzipped) tar by their path inside it (``./`` stripped); anything that would
    escape the archive root (absolute paths, ``..``) is refused rather than trusted."""
    files: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
            for member in tar.getmembers():
                if not member.isfile():
                    continue
                name = member.name.removeprefix("./")
                if name.startswith("/") or ".." in name.split("/"):
                    raise BadModelArtifacts(f"model.tar.gz holds an unsafe path '{member.name}'")
                extracted = tar.extractfile(member)
                if extracted is not None:
                    files[name] = extracted.read()
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise BadModelArtifacts(f"model.tar.gz cannot be read: {exc}") from None
    return files


class S3ModelArtifacts:
    def __init__(self, s3: Any | None = None) -> None:
        self._s3 = s3 or client("s3")

    def fetch(self, uri: str) -> dict[str, bytes]:
        bucket, key = parse_s3_uri(uri)
        with transient_aws_errors(f"reading {uri}"):
            try:
                data = self._s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            except self._s3.exceptions.NoSuchKey:
                raise BadModelArtifacts(f"{uri} does not exist") from None
        return read_tar_members(data)
