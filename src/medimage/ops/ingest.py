"""Upload a folder-per-label tree to a deployed bucket: in parallel, resumable, `_commit` last.

Resumable means a second run lists ``incoming/labeled/<dataset>/`` (and that dataset's quarantine) once
and uploads only what is missing or different (size, then the S3 ETag: the MD5 of a single-part upload, or
the multipart ETag computed with the same part size), so an interrupted upload of 100,000 X-rays continues
instead of starting over.
"""

from __future__ import annotations

import hashlib
import mimetypes
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medimage.core import layout
from medimage.core.errors import IngestProblem
from medimage.core.label_tree import labeled_destination, scan_label_tree

# Files up to this size go up in one PUT (ETag = MD5); larger ones in parts of this size.
PART_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class LocalFile:
    path: Path
    key: str
    size: int


@dataclass(frozen=True)
class RemoteObject:
    size: int
    etag: str


@dataclass
class IngestResult:
    bucket: str
    prefix: str
    total: int
    uploaded: int = 0
    skipped: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (key, one-line error)
    ignored: list[str] = field(default_factory=list)  # local files the label-tree rule skips
    committed: bool = False
    bytes_uploaded: int = 0

    @property
    def ok(self) -> bool:
        return not self.failed


def labeled_prefix(dataset: str) -> str:
    return f"{layout.LABELED_PREFIX}{layout.check_dataset_name(dataset)}/"


def plan_files(root: Path, dataset: str) -> tuple[list[LocalFile], list[str]]:
    """The files to upload with their keys, and the ones left out: those ``scan_label_tree`` skips (so
    what is uploaded is what ``medimage train`` reads), by path below ``root``. Keys are checked with the
    layout parser the annotate Lambda uses."""
    if not root.exists():
        raise IngestProblem(f"folder {root} does not exist")
    if not root.is_dir():
        raise IngestProblem(f"{root} is not a folder (expected one sub-folder per label)")
    labeled_prefix(dataset)  # a bad dataset name fails before the walk
    tree = scan_label_tree(root)
    files: list[LocalFile] = []
    ignored = [skipped.path.relative_to(root).as_posix() for skipped in tree.skipped]
    for _, path in tree.files:
        rel = path.relative_to(root)
        key, _reason = labeled_destination(dataset, rel)
        if key is None:
            ignored.append(rel.as_posix())
            continue
        files.append(LocalFile(path=path, key=key, size=path.stat().st_size))
    return files, ignored


def local_etag(path: Path, size: int, part_bytes: int = PART_BYTES) -> str:
    """The ETag S3 gives this file when uploaded by `upload_one` (SSE-S3, as the template's bucket)."""
    if size <= part_bytes:
        digest = hashlib.md5(usedforsecurity=False)
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1024 * 1024), b""):
                digest.update(chunk)
        return digest.hexdigest()
    parts: list[bytes] = []
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(part_bytes), b""):
            parts.append(hashlib.md5(chunk, usedforsecurity=False).digest())
    return f"{hashlib.md5(b''.join(parts), usedforsecurity=False).hexdigest()}-{len(parts)}"


def list_remote(s3: Any, bucket: str, prefix: str) -> dict[str, RemoteObject]:
    """One listing of the dataset's prefix: what is already there."""
    found: dict[str, RemoteObject] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            found[obj["Key"]] = RemoteObject(size=int(obj["Size"]), etag=str(obj["ETag"]).strip('"'))
    return found


def is_same(local: LocalFile, remote: RemoteObject | None, part_bytes: int = PART_BYTES) -> bool:
    if remote is None or remote.size != local.size:
        return False
    return remote.etag == local_etag(local.path, local.size, part_bytes)


def upload_one(s3: Any, bucket: str, local: LocalFile, part_bytes: int = PART_BYTES) -> None:
    from boto3.s3.transfer import TransferConfig

    content_type = mimetypes.guess_type(local.path.name)[0] or "application/octet-stream"
    config = TransferConfig(
        multipart_threshold=part_bytes + 1, multipart_chunksize=part_bytes, use_threads=False
    )
    s3.upload_file(str(local.path), bucket, local.key, ExtraArgs={"ContentType": content_type}, Config=config)


Progress = Callable[[int, int, str], None]  # (done, total, last outcome)


def ingest(
    root: Path,
    dataset: str,
    bucket: str,
    s3: Any,
    *,
    workers: int = 8,
    commit: bool = False,
    progress: Progress | None = None,
    part_bytes: int = PART_BYTES,
    plan: tuple[list[LocalFile], list[str]] | None = None,
) -> IngestResult:
    """Upload what is missing, then (with ``commit``, and only when nothing failed) ``_commit``, which
    makes the split Lambda write a manifest version and start training; the marker goes last so that the
    manifest includes every image of this batch. ``plan`` is `plan_files`' answer when already made."""
    files, ignored = plan or plan_files(root, dataset)
    prefix = labeled_prefix(dataset)
    remote = list_remote(s3, bucket, prefix)
    # Files the annotate Lambda rejected were moved to quarantine: uploading them again would only
    # quarantine them again, so a copy there counts as already uploaded.
    quarantined = layout.quarantine_key(dataset, prefix)
    for key, obj in list_remote(s3, bucket, quarantined).items():
        if not key.endswith(".reason.json"):
            remote.setdefault(prefix + key[len(quarantined) :], obj)
    result = IngestResult(bucket=bucket, prefix=prefix, total=len(files), ignored=ignored)
    lock = threading.Lock()
    done = 0

    def work(local: LocalFile) -> str:
        if is_same(local, remote.get(local.key), part_bytes):
            return "skipped"
        upload_one(s3, bucket, local, part_bytes)
        return "uploaded"

    def record(local: LocalFile, outcome: str, error: str | None) -> None:
        nonlocal done
        with lock:
            done += 1
            if error is not None:
                result.failed.append((local.key, error))
            elif outcome == "uploaded":
                result.uploaded += 1
                result.bytes_uploaded += local.size
            else:
                result.skipped += 1
            if progress:
                progress(done, len(files), outcome)

    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="ingest") as pool:
        futures = {pool.submit(work, f): f for f in files}
        for future in as_completed(futures):
            local = futures[future]
            try:
                record(local, future.result(), None)
            except Exception as exc:  # one bad file must not stop the batch: counted and reported
                record(local, "failed", _one_line(exc))

    if commit and result.ok:
        s3.put_object(Bucket=bucket, Key=layout.commit_key(dataset), Body=b"")
        result.committed = True
    result.failed.sort()
    return result


def _one_line(exc: BaseException) -> str:
    from medimage.ops.stack import describe

    return " ".join(describe(exc).split())


def summary_lines(result: IngestResult, commit_requested: bool) -> Iterable[str]:
    where = f"s3://{result.bucket}/{result.prefix}"
    yield (
        f"{where}: {result.uploaded} uploaded ({result.bytes_uploaded / 1e6:.1f} MB), "
        f"{result.skipped} skipped (already there), {len(result.failed)} failed, of {result.total} files"
    )
    if result.ignored:
        shown = ", ".join(result.ignored[:5]) + (" ..." if len(result.ignored) > 5 else "")
        yield (
            f"left out {len(result.ignored)} files outside a label folder, hidden, OS litter or not images: "
            f"{shown}"
        )
    for key, error in result.failed[:10]:
        yield f"failed: {key}: {error}"
    if len(result.failed) > 10:
        yield f"... and {len(result.failed) - 10} more failures"
    if result.committed:
        yield (
            f"committed: s3://{result.bucket}/{result.prefix}{layout.COMMIT_MARKER} "
            "(the split Lambda writes a manifest and starts training: "
            "follow it with `medimage pipeline status`)"
        )
    elif commit_requested and result.failed:
        yield "not committed: some uploads failed; run the same command again to retry them and commit"
