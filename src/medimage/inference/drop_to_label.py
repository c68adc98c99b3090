"""Drop-to-label: classify images uploaded under ``incoming/unlabeled/<dataset>/`` (no boto3 here).

Each image gets one JSON result at `layout.prediction_key`; each batch gets one text file in the
workshop's ``prediction_output.txt`` format (``<file name> <label>`` per line). Delivery is
at-least-once, so everything is idempotent:

* the batch id is a hash of the S3 object identities in the batch, so a redelivered batch rewrites
  the same file with the same lines;
* a result records the identity of the object it describes (key + version/sequencer/etag) and the batch
  file that reported it: a duplicate notification in another batch is not reported twice, while an image
  whose first batch never wrote its file (a crash in between) is adopted by the batch that sees it next.

Unusable objects are moved (copy, then delete) to ``quarantine/<dataset>/<key>`` with a
``.reason.json`` beside them. A missing production model raises, so the message is retried and,
after the queue's redrive count, kept in the dead-letter queue.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from medimage.core.errors import RejectedInput
from medimage.core.layout import (
    PREDICTIONS_PREFIX,
    UNLABELED_PREFIX,
    dataset_of_key,
    dataset_of_unlabeled,
    prediction_key,
    quarantine_key,
    quarantine_reason_key,
)
from medimage.inference.service import InferenceService, PredictionResult

BATCH_FILE = "prediction_output.txt"


def batch_output_key(dataset: str, batch_id: str) -> str:
    """``predictions/<dataset>/_batches/<batch id>/prediction_output.txt``; never clashes with an image
    result, whose key always ends in ``.json``."""
    return f"{PREDICTIONS_PREFIX}{dataset}/_batches/{batch_id}/{BATCH_FILE}"


class ObjectStore(Protocol):
    """The bucket operations drop-to-label needs (`medimage.adapters.s3.S3ObjectStore` has them)."""

    def get_bytes(self, key: str) -> bytes | None:
        """The object's bytes, or None when it does not exist (any more)."""
        ...

    def get_json(self, key: str) -> dict[str, Any] | None: ...

    def put_bytes(self, key: str, body: bytes, content_type: str) -> None: ...

    def exists(self, key: str) -> bool: ...

    def copy(self, source_key: str, dest_key: str) -> None: ...

    def delete(self, key: str) -> None: ...


@dataclass(frozen=True)
class ObjectRef:
    """One created object, from an S3 event record (key already URL-decoded)."""

    key: str
    size: int | None = None
    etag: str = ""
    sequencer: str = ""
    version_id: str = ""

    @property
    def identity(self) -> str:
        """Stable across duplicate notifications of one upload, different for a re-upload."""
        return f"{self.key}|{self.version_id}|{self.sequencer or self.etag}"


def batch_id(refs: Iterable[ObjectRef]) -> str:
    digest = hashlib.sha256("\n".join(sorted(r.identity for r in refs)).encode("utf-8"))
    return digest.hexdigest()[:24]


@dataclass(frozen=True)
class LabelOutcome:
    status: str  # labeled | duplicate | quarantined | gone | skipped
    key: str
    dataset: str | None = None
    filename: str | None = None
    label: str | None = None
    result: PredictionResult | None = None
    reason: dict[str, str] | None = None


def _utcnow() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class DropLabeler:
    def __init__(
        self, service: InferenceService, store: ObjectStore, clock: Callable[[], str] = _utcnow
    ) -> None:
        self.service = service
        self.store = store
        self._clock = clock

    def label(self, ref: ObjectRef, batch: str) -> LabelOutcome:
        """Classify, deduplicate or quarantine one object of batch `batch`."""
        if not ref.key.startswith(UNLABELED_PREFIX) or ref.key.endswith("/"):
            return LabelOutcome("skipped", ref.key)  # not an image upload (another prefix, a folder marker)
        try:
            dataset, filename = dataset_of_unlabeled(ref.key)
            self.service.resolve_dataset(dataset)
            limit = self.service.config.max_object_bytes
            if ref.size is not None and ref.size > limit:
                raise RejectedInput(
                    f"the file is {ref.size} bytes, over the limit of {limit} bytes", "too_large"
                )
        except RejectedInput as exc:
            return self.quarantine(ref.key, dataset_of_key(ref.key), exc)

        result_key = prediction_key(dataset, ref.key)
        batch_key = batch_output_key(dataset, batch)
        existing = self.store.get_json(result_key)
        if existing and existing.get("source", {}).get("identity") == ref.identity:
            return self._seen_before(ref, dataset, filename, existing, result_key, batch_key)

        data = self.store.get_bytes(ref.key)
        if data is None:
            return LabelOutcome(
                "gone", ref.key, dataset, filename
            )  # moved to quarantine by an earlier delivery
        try:
            result = self.service.predict(data, dataset, max_bytes=self.service.config.max_object_bytes)
        except RejectedInput as exc:
            return self.quarantine(ref.key, dataset, exc)
        record = {
            "key": ref.key,
            "dataset": dataset,
            "file": filename,
            "label": result.label,
            "probabilities": result.probabilities,
            "model_version": result.model_version,
            "model_sha256": result.model_sha256,
            "latency_ms": result.latency_ms,
            "predicted_at": self._clock(),
            "batch_output_key": batch_key,
            "source": {
                "identity": ref.identity,
                "size": len(data),
                "etag": ref.etag,
                "sequencer": ref.sequencer,
                "version_id": ref.version_id,
            },
        }
        self._put_json(result_key, record)
        return LabelOutcome("labeled", ref.key, dataset, filename, result.label, result)

    def _seen_before(
        self,
        ref: ObjectRef,
        dataset: str,
        filename: str,
        existing: dict[str, Any],
        result_key: str,
        batch_key: str,
    ) -> LabelOutcome:
        reported_in = existing.get("batch_output_key")
        label = str(existing.get("label"))
        if reported_in == batch_key:
            return LabelOutcome("labeled", ref.key, dataset, filename, label)  # this same batch, redelivered
        if reported_in and self.store.exists(reported_in):
            return LabelOutcome("duplicate", ref.key, dataset, filename, label)
        self._put_json(result_key, {**existing, "batch_output_key": batch_key})  # its batch never finished
        return LabelOutcome("labeled", ref.key, dataset, filename, label)

    def quarantine(self, key: str, dataset: str | None, exc: RejectedInput) -> LabelOutcome:
        reason = {**exc.as_reason(), "key": key, "stage": "inference", "quarantined_at": self._clock()}
        if not self.store.exists(key):
            return LabelOutcome("gone", key, dataset, reason=exc.as_reason())
        # Reason first, then copy, then delete: a retry after a crash in between repeats these harmlessly.
        self._put_json(quarantine_reason_key(dataset, key), reason)
        self.store.copy(key, quarantine_key(dataset, key))
        self.store.delete(key)
        return LabelOutcome("quarantined", key, dataset, reason=exc.as_reason())

    def write_batch_files(self, outcomes: Iterable[LabelOutcome], batch: str) -> dict[str, str]:
        """One ``prediction_output.txt`` per dataset of the batch; {dataset: key}."""
        lines: dict[str, list[str]] = {}
        for outcome in outcomes:
            if outcome.status == "labeled" and outcome.dataset:
                lines.setdefault(outcome.dataset, []).append(f"{outcome.filename} {outcome.label}")
        written = {}
        for dataset, rows in sorted(lines.items()):
            key = batch_output_key(dataset, batch)
            self.store.put_bytes(
                key, ("\n".join(sorted(rows)) + "\n").encode("utf-8"), "text/plain; charset=utf-8"
            )
            written[dataset] = key
        return written

    def _put_json(self, key: str, doc: dict[str, Any]) -> None:
        self.store.put_bytes(
            key, json.dumps(doc, indent=1, sort_keys=True).encode("utf-8"), "application/json"
        )
