"""Drop-to-label: classify images uploaded under ``incoming/unlabeled/<dataset>/`` (no boto3 here).

Each image gets one JSON result at `layout.prediction_key`; each batch gets one text file in the
workshop's ``prediction_output.txt`` format (``<file name> <label>`` per line). Delivery is
at-least-once, so everything is idempotent:

* the batch id is a hash of the S3 object identities in the batch, so a redelivered batch rewrites
  the same file with the same lines;
* a result records the identity of the object it describes (key + version/sequencer/etag) and the batch
  file that reported it: a duplicate notification in another batch is not reported twice, while an image
  whose first batch never wrote its file (a crash in between) is adopted by the batch that sees it next.

Unusable objects are moved to ``quarantine/<dataset>/<key>`` with a ``.reason.json`` beside them, by the
one quarantine procedure annotate uses too (`medimage.services.quarantine`). A missing production model
raises, so the message is retried and, after the queue's redrive count, kept in the dead-letter queue.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from medimage.core.errors import RejectedInput
from medimage.core.layout import (
    PREDICTIONS_PREFIX,
    UNLABELED_PREFIX,
    dataset_of_key,
    dataset_of_unlabeled,
    prediction_key,
)
from medimage.core.objects import ObjectRef
from medimage.inference.service import InferenceService, PredictionResult
from medimage.services.ports import ObjectStore
from medimage.services.quarantine import Moved, quarantine_object

BATCH_FILE = "prediction_output.txt"


def batch_output_key(dataset: str, batch_id: str) -> str:
    """``predictions/<dataset>/_batches/<batch id>/prediction_output.txt``; never clashes with an image
    result, whose key always ends in ``.json``."""
    return f"{PREDICTIONS_PREFIX}{dataset}/_batches/{batch_id}/{BATCH_FILE}"


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
            limit = self.service.config.max_image_bytes
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
            result = self.service.predict(data, dataset, max_bytes=self.service.config.max_image_bytes)
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
        self.store.put_json(result_key, record)
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
        self.store.put_json(
            result_key, {**existing, "batch_output_key": batch_key}
        )  # its batch never finished
        return LabelOutcome("labeled", ref.key, dataset, filename, label)

    def quarantine(self, key: str, dataset: str | None, exc: RejectedInput) -> LabelOutcome:
        moved = quarantine_object(self.store, key, dataset, exc, self._clock(), stage="inference")
        status = "quarantined" if moved is Moved.MOVED else "gone"
        return LabelOutcome(status, key, dataset, reason=exc.as_reason())

    def write_batch_files(self, outcomes: Iterable[LabelOutcome], batch: str) -> dict[str, str]:
        """One ``prediction_output.txt`` per dataset of the batch; {dataset: key}."""
        lines: dict[str, list[str]] = {}
        for outcome in outcomes:
            if outcome.status == "labeled" and outcome.dataset:
                lines.setdefault(outcome.dataset, []).append(f"{outcome.filename} {outcome.label}")
        written = {}
        for dataset, rows in sorted(lines.items()):
            key = batch_output_key(dataset, batch)
            self.store.put_text(key, "\n".join(sorted(rows)) + "\n")
            written[dataset] = key
        return written
