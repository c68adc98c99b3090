"""Value types the storage ports exchange, and the one reading of ``s3://bucket/key`` URIs."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from urllib.parse import urlparse

from medimage.core.errors import BadS3Uri


@dataclass(frozen=True)
class ObjectHead:
    size: int
    etag: str


@dataclass(frozen=True)
class SourceObject:
    """An object of another bucket that a bulk import copies from (never written to)."""

    bucket: str
    key: str
    size: int
    etag: str
    content_type: str = "application/octet-stream"


@dataclass(frozen=True)
class ImportedObject:
    """A data-bucket object a bulk import wrote: its size and the source ETag recorded in its metadata
    (a copy's own ETag may differ from the source's, for a multipart source)."""

    size: int
    source_etag: str


@dataclass(frozen=True)
class ObjectData:
    size: int
    data: bytes | None  # None when the object is larger than the caller's limit: never read


@dataclass(frozen=True)
class ObjectRef:
    """One object named by an event (key URL-decoded), with what S3 says of that upload."""

    bucket: str
    key: str
    size: int | None = None
    etag: str = ""
    sequencer: str = ""
    version_id: str = ""

    @property
    def identity(self) -> str:
        """Stable across duplicate notifications of one upload, different for a re-upload."""
        return f"{self.key}|{self.version_id}|{self.sequencer or self.etag}"


def batch_id(refs: list[ObjectRef]) -> str:
    """A name for a batch of uploads that a redelivery of the same batch gets again."""
    digest = hashlib.sha256("\n".join(sorted(r.identity for r in refs)).encode("utf-8"))
    return digest.hexdigest()[:24]


def parse_s3_uri(uri: str, key_required: bool = True) -> tuple[str, str]:
    """``s3://bucket/key`` -> (bucket, key); BadS3Uri for anything else (``s3://bucket/`` is a prefix: an
    empty key, accepted only when ``key_required`` is False)."""
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc or (key_required and not parsed.path.strip("/")):
        raise BadS3Uri(f"'{uri}' is not an s3://bucket/key URI")
    return parsed.netloc, parsed.path.lstrip("/")
