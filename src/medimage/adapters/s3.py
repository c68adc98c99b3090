"""S3 object access for the data bucket (the `ObjectStore` port)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from botocore.exceptions import ClientError

from medimage.adapters.aws import client, is_not_found
from medimage.core.objects import ObjectData, ObjectHead

# Conditional writes that lost a race: 412 PreconditionFailed, or 409 while another write is in flight.
_CONFLICT_CODES = frozenset({"PreconditionFailed", "ConditionalRequestConflict", "412", "409"})


def is_write_conflict(exc: ClientError) -> bool:
    error = exc.response.get("Error", {}).get("Code", "")
    status = str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
    return error in _CONFLICT_CODES or status in _CONFLICT_CODES


# A multipart upload's parts (S3: 5 MiB at least, but the last; 10,000 parts at most, so up to 80 GiB).
PART_BYTES = 8 * 1024 * 1024
LINE_CHUNK_BYTES = 1024 * 1024


def _lines(chunks: Iterator[bytes]) -> Iterator[str]:
    """UTF-8 text lines (each with its newline) from a byte stream cut anywhere."""
    rest = b""
    for chunk in chunks:
        rest += chunk
        *whole, rest = rest.split(b"\n")
        for line in whole:
            yield (line + b"\n").decode("utf-8")
    if rest:
        yield rest.decode("utf-8")


def dumps(value: Any) -> bytes:
    """The JSON documents the pipeline writes: indented and key-sorted, so diffs between versions read."""
    return json.dumps(value, indent=2, sort_keys=True).encode("utf-8")


class S3ObjectStore:
    def __init__(self, bucket: str, s3: Any | None = None) -> None:
        self.bucket = bucket
        self._s3 = s3 or client("s3")

    def head(self, key: str) -> ObjectHead | None:
        try:
            res = self._s3.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if is_not_found(exc):
                return None
            raise
        return ObjectHead(size=int(res["ContentLength"]), etag=res["ETag"].strip('"'))

    def exists(self, key: str) -> bool:
        return self.head(key) is not None

    def _get(self, key: str) -> dict[str, Any] | None:
        try:
            return self._s3.get_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if is_not_found(exc):
                return None
            raise

    def get_bytes(self, key: str) -> bytes | None:
        res = self._get(key)
        return None if res is None else res["Body"].read()

    def read(self, key: str, max_bytes: int) -> ObjectData | None:
        """One GET: the body is read only when the object's length is within ``max_bytes``."""
        res = self._get(key)
        if res is None:
            return None
        size = int(res["ContentLength"])
        if size > max_bytes:
            res["Body"].close()
            return ObjectData(size=size, data=None)
        return ObjectData(size=size, data=res["Body"].read())

    def get_text(self, key: str) -> str | None:
        data = self.get_bytes(key)
        return None if data is None else data.decode("utf-8")

    def get_json(self, key: str) -> Any | None:
        text = self.get_text(key)
        return None if text is None else json.loads(text)

    def get_json_with_etag(self, key: str) -> tuple[Any | None, str | None]:
        """The document and the ETag to make a conditional write against; (None, None) when missing."""
        res = self._get(key)
        if res is None:
            return None, None
        return json.loads(res["Body"].read()), res["ETag"]

    def put_bytes(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        self._s3.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type)

    def put_text(self, key: str, text: str, content_type: str = "text/plain; charset=utf-8") -> None:
        self.put_bytes(key, text.encode("utf-8"), content_type)

    def put_json(self, key: str, value: Any) -> None:
        self.put_bytes(key, dumps(value), "application/json")

    def put_if_absent(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> bool:
        """Write only if nothing is stored at ``key`` (``IfNoneMatch: *``); False when something is. A
        retry of a write whose answer was lost meets its own object and also answers False."""
        try:
            self._s3.put_object(
                Bucket=self.bucket, Key=key, Body=data, ContentType=content_type, IfNoneMatch="*"
            )
        except ClientError as exc:
            if is_write_conflict(exc):
                return False
            raise
        return True

    def put_json_if(self, key: str, value: Any, etag: str | None) -> bool:
        """Write only if the object is still at ``etag`` (or still absent when None); False when another
        writer got there first."""
        condition = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
        try:
            self._s3.put_object(
                Bucket=self.bucket, Key=key, Body=dumps(value), ContentType="application/json", **condition
            )
        except ClientError as exc:
            if is_write_conflict(exc):
                return False
            raise
        return True

    def copy(self, source_key: str, dest_key: str) -> None:
        self._s3.copy_object(
            Bucket=self.bucket, Key=dest_key, CopySource={"Bucket": self.bucket, "Key": source_key}
        )

    def delete(self, key: str) -> None:
        self._s3.delete_object(Bucket=self.bucket, Key=key)

    def read_lines(self, key: str) -> Iterator[str] | None:
        """The object's text line by line (ends kept), read from the response stream as it goes."""
        res = self._get(key)
        return None if res is None else _lines(res["Body"].iter_chunks(LINE_CHUNK_BYTES))

    def start_upload(self, key: str, content_type: str = "application/octet-stream") -> S3Upload:
        return S3Upload(self._s3, self.bucket, key, content_type)

    def list_keys(self, prefix: str) -> Iterator[str]:
        paginator = self._s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                yield item["Key"]


class S3Upload:
    """An object written in parts of ``PART_BYTES``: one PutObject when it stays under a part, else a
    multipart upload. Either way it is stored only if the key is still free (``IfNoneMatch: *``)."""

    def __init__(
        self, s3: Any, bucket: str, key: str, content_type: str, part_bytes: int = PART_BYTES
    ) -> None:
        self._s3 = s3
        self.bucket = bucket
        self.key = key
        self.content_type = content_type
        self.part_bytes = part_bytes
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []

    def write(self, data: bytes) -> None:
        self._buffer += data
        while len(self._buffer) >= self.part_bytes:
            self._send_part(bytes(self._buffer[: self.part_bytes]))
            del self._buffer[: self.part_bytes]

    def _send_part(self, data: bytes) -> None:
        if self._upload_id is None:
            started = self._s3.create_multipart_upload(
                Bucket=self.bucket, Key=self.key, ContentType=self.content_type
            )
            self._upload_id = started["UploadId"]
        number = len(self._parts) + 1
        sent = self._s3.upload_part(
            Bucket=self.bucket, Key=self.key, UploadId=self._upload_id, PartNumber=number, Body=data
        )
        self._parts.append({"PartNumber": number, "ETag": sent["ETag"]})

    def finish(self) -> bool:
        if self._upload_id is None:
            return S3ObjectStore(self.bucket, self._s3).put_if_absent(
                self.key, bytes(self._buffer), self.content_type
            )
        if self._buffer:
            self._send_part(bytes(self._buffer))
            self._buffer.clear()
        # Checked first as well: an emulated S3 may not honour IfNoneMatch on completion.
        if S3ObjectStore(self.bucket, self._s3).exists(self.key):
            self.abort()
            return False
        try:
            self._s3.complete_multipart_upload(
                Bucket=self.bucket,
                Key=self.key,
                UploadId=self._upload_id,
                MultipartUpload={"Parts": self._parts},
                IfNoneMatch="*",
            )
        except ClientError as exc:
            if is_write_conflict(exc):
                self.abort()
                return False
            raise
        return True

    def abort(self) -> None:
        if self._upload_id is not None:
            self._s3.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self._upload_id)
            self._upload_id = None
        self._buffer.clear()
