"""Bulk import: a folder-per-label tree already in S3 (another bucket or prefix, maybe another account),
copied server-side into ``incoming/labeled/<dataset>/`` by the bulk-import state machine.

Three steps, each one invocation of the bulk-copy function:

- ``check``: the request is well formed, a preset governs the dataset, the stack may read the source
  bucket (BulkImportSourceBuckets); the Map's concurrency, batch size and failure tolerance come back as
  numbers.
- ``copy_batch``: one batch of source keys (the Map's ItemBatcher). Each key is mapped as local ingest maps
  a file (`labeled_destination`); one already imported (same size, and the source ETag recorded in the
  copy's metadata, or its quarantined copy) is skipped; a failure is recorded with a stable code and does
  not stop the batch. What the batch did goes to ``imports/<dataset>/<import>/batches/<batch>.json``.
- ``finish``: sums the batches (and the batches whose function failed outright, from the Map's
  ResultWriter), writes ``summary.json`` and ``failures.json``, and puts ``_commit`` (what `medimage
  ingest --commit` puts) only when asked and the failures are within tolerance.

A rerun copies only what is missing: every step is idempotent, and source objects are never written.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import unquote_plus

from medimage.core import layout
from medimage.core.errors import BadS3Uri, BulkImportProblem, RejectedInput
from medimage.core.label_tree import labeled_destination
from medimage.core.objects import SourceObject, parse_s3_uri
from medimage.services.datasets import DatasetResolver
from medimage.services.ports import ImportCopier, ObjectStore

# Stable codes of an object that was not copied (failures.json, the CLI's summary).
SOURCE_MISSING = "source_missing"  # listed, but gone by the time its batch ran
SOURCE_UNREADABLE = "source_unreadable"  # the stack may not read it (bucket policy, KMS key)
SOURCE_CHANGED = "source_changed"  # overwritten between its HEAD and its copy: the next run copies it
COPY_FAILED = "copy_failed"  # any other error of the copy
BATCH_FAILED = "batch_failed"  # the whole batch's function failed (after its retries)

MAX_LISTED_IGNORED = 100  # keys left out (not in a label folder ...) listed per batch, the rest counted


@dataclass(frozen=True)
class ImportRequest:
    """One bulk import: the execution input, checked."""

    dataset: str
    source_bucket: str
    source_prefix: str
    import_id: str
    commit: bool = False
    tolerated_failure_percent: float = 0.0
    max_concurrency: int = 10
    batch_size: int = 200  # keys per bulk-copy invocation (the Map's ItemBatcher)
    # An S3 inventory's manifest.json to read the keys from instead of listing the prefix (cloud only).
    manifest_bucket: str = ""
    manifest_key: str = ""

    @classmethod
    def from_payload(cls, payload: Any) -> ImportRequest:
        if not isinstance(payload, dict):
            raise BulkImportProblem("the import request is not a JSON object", "bad_import_input")
        try:
            dataset = layout.check_dataset_name(str(payload["dataset"]))
            bucket = str(payload["source_bucket"])
            prefix = str(payload.get("source_prefix") or "")
            import_id = str(payload["import_id"])
            percent = float(payload.get("tolerated_failure_percent", 0))
            concurrency = int(payload.get("max_concurrency", 10))
            batch_size = int(payload.get("batch_size", 200))
        except KeyError as exc:
            raise BulkImportProblem(f"the import request lacks {exc}", "bad_import_input") from None
        except (TypeError, ValueError) as exc:
            raise BulkImportProblem(f"the import request is malformed: {exc}", "bad_import_input") from None
        except RejectedInput as exc:
            raise BulkImportProblem(exc.message, "bad_import_input") from None
        manifest = str(payload.get("inventory_manifest") or "")
        manifest_bucket, manifest_key = "", ""
        if manifest:
            try:
                manifest_bucket, manifest_key = parse_s3_uri(manifest)
            except BadS3Uri as exc:
                raise BulkImportProblem(exc.message, "bad_import_input") from None
        if not bucket or not import_id:
            raise BulkImportProblem(
                "the import request needs a source bucket and an import id", "bad_import_input"
            )
        if not 0 <= percent <= 100 or concurrency < 1 or batch_size < 1:
            raise BulkImportProblem(
                "tolerated_failure_percent must be 0-100, max_concurrency and batch_size at least 1",
                "bad_import_input",
            )
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        return cls(
            dataset=dataset,
            source_bucket=bucket,
            source_prefix=prefix,
            import_id=import_id,
            commit=bool(payload.get("commit", False)),
            tolerated_failure_percent=percent,
            max_concurrency=concurrency,
            batch_size=batch_size,
            manifest_bucket=manifest_bucket,
            manifest_key=manifest_key,
        )

    def to_payload(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "source_bucket": self.source_bucket,
            "source_prefix": self.source_prefix,
            "import_id": self.import_id,
            "commit": self.commit,
            "tolerated_failure_percent": self.tolerated_failure_percent,
            "max_concurrency": self.max_concurrency,
            "batch_size": self.batch_size,
            "inventory_manifest": f"s3://{self.manifest_bucket}/{self.manifest_key}"
            if self.manifest_key
            else "",
            "manifest_bucket": self.manifest_bucket,
            "manifest_key": self.manifest_key,
        }


def relative_to_prefix(prefix: str, key: str) -> PurePosixPath | None:
    """A source key below the import's prefix, as a path below the tree's root (None: outside it)."""
    if not key.startswith(prefix) or key.endswith("/"):
        return None
    return PurePosixPath(key[len(prefix) :])


def destination_of(request: ImportRequest, key: str) -> tuple[str | None, str | None]:
    """``(incoming/labeled/<dataset>/<label>/<file>, None)`` or ``(None, why it is left out)``."""
    relative = relative_to_prefix(request.source_prefix, key)
    if relative is None:
        return None, f"not under the prefix {request.source_prefix}"
    return labeled_destination(request.dataset, relative)


def batch_id(keys: Iterable[str]) -> str:
    """The same batch (a retry of it) gets the same id, so it overwrites its own record."""
    return hashlib.sha256("\n".join(sorted(keys)).encode("utf-8")).hexdigest()[:24]


@dataclass
class BatchResult:
    batch: str
    copied: int = 0
    skipped: int = 0
    ignored: int = 0
    bytes_copied: int = 0
    ignored_keys: list[dict[str, str]] = field(default_factory=list)
    failures: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch": self.batch,
            "copied": self.copied,
            "skipped": self.skipped,
            "ignored": self.ignored,
            "failed": len(self.failures),
            "bytes_copied": self.bytes_copied,
            "ignored_keys": self.ignored_keys,
            "failures": self.failures,
        }


class BulkImporter:
    def __init__(
        self,
        store: ObjectStore,
        copier: ImportCopier,
        resolver: DatasetResolver,
        allowed_sources: frozenset[str],
    ) -> None:
        self.store = store
        self.copier = copier
        self.resolver = resolver
        self.allowed_sources = allowed_sources

    # ------------------------------------------------------------------ check
    def check(self, request: ImportRequest) -> dict[str, Any]:
        """The request, once its dataset has a preset and its source bucket is one the stack may read."""
        try:
            self.resolver.preset_for(request.dataset)
        except RejectedInput as exc:
            raise BulkImportProblem(exc.message, "unknown_dataset") from None
        if request.source_bucket == self.store.bucket:
            raise BulkImportProblem(
                "the source is the stack's own data bucket: upload there with `medimage ingest DIR`",
                "source_not_allowed",
            )
        for bucket in {request.source_bucket, request.manifest_bucket or request.source_bucket}:
            if bucket not in self.allowed_sources:
                allowed = ", ".join(sorted(self.allowed_sources)) or "none"
                raise BulkImportProblem(
                    f"bucket '{bucket}' is not one the stack may import from "
                    f"(BulkImportSourceBuckets: {allowed}); redeploy with it added",
                    "source_not_allowed",
                )
        return request.to_payload()

    # ------------------------------------------------------------------ copy
    def copy_batch(self, request: ImportRequest, keys: list[str]) -> BatchResult:
        # listObjectsV2 gives keys as they are; an S3 inventory's CSV has them URL-encoded.
        keys = [unquote_plus(k) for k in keys] if request.manifest_key else keys
        result = BatchResult(batch=batch_id(keys))
        for key in keys:
            dest, reason = destination_of(request, key)
            if dest is None:
                result.ignored += 1
                if len(result.ignored_keys) < MAX_LISTED_IGNORED:
                    result.ignored_keys.append({"key": key, "reason": reason or ""})
                continue
            try:
                outcome, size = self._copy_one(request, key, dest)
            except BulkImportProblem as exc:
                result.failures.append({"key": key, "code": exc.code, "message": exc.message})
                continue
            except Exception as exc:  # one object must not stop the batch: recorded, retried by a rerun
                result.failures.append({"key": key, "code": COPY_FAILED, "message": type(exc).__name__})
                continue
            if outcome == "copied":
                result.copied += 1
                result.bytes_copied += size
            else:
                result.skipped += 1
        self.store.put_json(
            layout.import_batch_key(request.dataset, request.import_id, result.batch), result.to_dict()
        )
        return result

    def _copy_one(self, request: ImportRequest, key: str, dest: str) -> tuple[str, int]:
        source = self.copier.source_head(request.source_bucket, key)
        if source is None:
            raise BulkImportProblem("the source object is gone", SOURCE_MISSING)
        if self._already_imported(source, dest, request.dataset):
            return "skipped", source.size
        self.copier.copy_in(source, dest)
        return "copied", source.size

    def _already_imported(self, source: SourceObject, dest: str, dataset: str) -> bool:
        # An image the annotate function rejected was moved to quarantine with its metadata: copying it
        # again would only quarantine it again, so that copy counts as imported (as local ingest does).
        for key in (dest, layout.quarantine_key(dataset, dest)):
            found = self.copier.imported(key)
            if found is not None and found.size == source.size and found.source_etag == source.etag:
                return True
        return False

    # ------------------------------------------------------------------ finish
    def finish(self, request: ImportRequest, map_output: Any) -> dict[str, Any]:
        prefix = layout.import_prefix(request.dataset, request.import_id)
        totals = {"copied": 0, "skipped": 0, "ignored": 0, "bytes_copied": 0}
        failures: list[dict[str, str]] = []
        for key in sorted(self.copier.list_keys(prefix + "batches/")):
            batch = self.store.get_json(key) or {}
            for name in totals:
                totals[name] += int(batch.get(name, 0))
            failures.extend(batch.get("failures", []))
        failures.extend(self._failed_batches(map_output))
        map_error = map_output.get("Error") if isinstance(map_output, dict) else None
        considered = totals["copied"] + totals["skipped"] + len(failures)
        within = map_error is None and len(failures) <= considered * request.tolerated_failure_percent / 100
        committed = False
        if request.commit and within and totals["copied"] + totals["skipped"] > 0:
            self.store.put_bytes(layout.commit_key(request.dataset), b"")
            committed = True
        failures.sort(key=lambda f: f.get("key", ""))
        failures_key = layout.import_failures_key(request.dataset, request.import_id)
        self.store.put_json(failures_key, {"failures": failures})
        summary = {
            **totals,
            "failed": len(failures),
            "failure_codes": _count_codes(failures),
            "within_tolerance": within,
            "tolerated_failure_percent": request.tolerated_failure_percent,
            "map_error": map_error,
            "commit_requested": request.commit,
            "committed": committed,
            "dataset": request.dataset,
            "import_id": request.import_id,
            "source": f"s3://{request.source_bucket}/{request.source_prefix}",
            "failures_key": failures_key,
        }
        self.store.put_json(layout.import_summary_key(request.dataset, request.import_id), summary)
        return summary

    def _failed_batches(self, map_output: Any) -> list[dict[str, str]]:
        """The keys of batches whose function failed outright, from the ResultWriter's manifest."""
        details = map_output.get("ResultWriterDetails") if isinstance(map_output, dict) else None
        if not isinstance(details, dict) or not details.get("Key"):
            return []
        manifest = self.store.get_json(str(details["Key"])) or {}
        out: list[dict[str, str]] = []
        for result_file in (manifest.get("ResultFiles") or {}).get("FAILED", []):
            for execution in self.store.get_json(str(result_file.get("Key", ""))) or []:
                try:
                    items = json.loads(execution.get("Input") or "{}").get("Items", [])
                except (AttributeError, json.JSONDecodeError):
                    items = []
                message = str(execution.get("Error") or "the batch failed")
                out.extend(
                    {"key": str(i.get("key")), "code": BATCH_FAILED, "message": message} for i in items
                )
        return out


def _count_codes(failures: list[dict[str, str]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for failure in failures:
        counts[failure.get("code", COPY_FAILED)] = counts.get(failure.get("code", COPY_FAILED), 0) + 1
    return dict(sorted(counts.items()))
