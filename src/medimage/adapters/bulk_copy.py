"""Server-side copies from a source bucket into the data bucket (the `ImportCopier` port).

The source is only read: HeadObject, and CopyObject's read of it (``CopySourceIfMatch`` the ETag that was
headed, so an object overwritten in between is not copied as the old one). The copy records the source's
ETag in its metadata (``x-amz-meta-source-etag``), which is what a rerun compares: a copy's own ETag
differs from a multipart source's. One CopyObject copies up to 5 GB; a larger object would need
UploadPartCopy, which images never need (such a source fails with ``copy_failed``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from botocore.exceptions import ClientError

from medimage.adapters.aws import client, is_not_found
from medimage.core.errors import BulkImportProblem
from medimage.core.objects import ImportedObject, SourceObject

SOURCE_ETAG_METADATA = "source-etag"
_DENIED = frozenset({"AccessDenied", "403", "Forbidden", "AllAccessDisabled", "InvalidObjectState"})
_CHANGED = frozenset({"PreconditionFailed", "412"})


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class S3ImportCopier:
    def __init__(self, bucket: str, s3: Any | None = None) -> None:
        self.bucket = bucket
        self._s3 = s3 or client("s3")

    def source_head(self, bucket: str, key: str) -> SourceObject | None:
        try:
            res = self._s3.head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if is_not_found(exc):
                return None
            if _code(exc) in _DENIED:
                raise BulkImportProblem(
                    "the stack may not read the source object", "source_unreadable"
                ) from None
            raise
        return SourceObject(
            bucket=bucket,
            key=key,
            size=int(res["ContentLength"]),
            etag=str(res["ETag"]).strip('"'),
            content_type=str(res.get("ContentType") or "application/octet-stream"),
        )

    def imported(self, key: str) -> ImportedObject | None:
        try:
            res = self._s3.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if is_not_found(exc):
                return None
            raise
        etag = (res.get("Metadata") or {}).get(SOURCE_ETAG_METADATA, "")
        return ImportedObject(size=int(res["ContentLength"]), source_etag=etag)

    def copy_in(self, source: SourceObject, dest_key: str) -> None:
        try:
            self._s3.copy_object(
                Bucket=self.bucket,
                Key=dest_key,
                CopySource={"Bucket": source.bucket, "Key": source.key},
                CopySourceIfMatch=f'"{source.etag}"',
                MetadataDirective="REPLACE",
                Metadata={SOURCE_ETAG_METADATA: source.etag},
                ContentType=source.content_type,
            )
        except ClientError as exc:
            if _code(exc) in _CHANGED:
                raise BulkImportProblem("the source changed while it was copied", "source_changed") from None
            if _code(exc) in _DENIED:
                raise BulkImportProblem(
                    "the stack may not read the source object", "source_unreadable"
                ) from None
            raise

    def list_keys(self, prefix: str) -> Iterator[str]:
        for page in self._s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                yield item["Key"]
