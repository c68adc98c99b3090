"""A SageMaker job's ``model.tar.gz`` (the packed ``SM_MODEL_DIR``), read from S3 into memory."""

from __future__ import annotations

import io
import tarfile
from typing import Any

from medimage.adapters.s3 import S3ObjectStore
from medimage.adapters.transient import transient_aws_errors
from medimage.core.errors import BadModelArtifacts
from medimage.core.objects import BadS3Uri, parse_s3_uri


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
    """The `ArtifactReader` port: the files of a training job's output archive."""

    def __init__(self, s3: Any | None = None) -> None:
        self._s3 = s3

    def read_members(self, uri: str) -> dict[str, bytes]:
        try:
            bucket, key = parse_s3_uri(uri)
        except BadS3Uri as exc:
            raise BadModelArtifacts(exc.message) from None
        with transient_aws_errors(f"reading {uri}"):
            data = S3ObjectStore(bucket, self._s3).get_bytes(key)
        if data is None:
            raise BadModelArtifacts(f"{uri} does not exist")
        return read_tar_members(data)
