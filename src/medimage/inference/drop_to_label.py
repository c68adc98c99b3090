"""Drop-to-label: classify images uploaded under ``incoming/unlabeled/<dataset>/`` (no boto3 here).

Each image gets one JSON result at `layout.prediction_key`; each batch gets one text file in the
workshop's ``prediction_output.txt`` format (``<file name> <label>`` per line, ``<file name> <label>
needs_review`` for a prediction a clinician must confirm). An image that needs review is also stored at
``review/<dataset>/<name>`` with its result JSON beside it (``<name>.json``), before its result is
written, so a result never exists without its review copy. Delivery is at-least-once, so everything is
idempotent:

* the batch id is a hash of the S3 object identities in the batch, so a redelivered batch rewrites
  the same file with the same lines;
* a result records the identity of the object it describes (key + version/sequencer/etag) and the batch
  file that reported it: a duplicate notification in another batch is not reported twice, while an image
  whose first batch never wrote its file (a crash in between) is adopted by the batch that sees it next.

Beside each result JSON go the results a PACS and a record system read (`medimage.results.writer`): a
FHIR DiagnosticReport for every image and a DICOM SR for a DICOM in its study; the JSON names their keys
under ``results``.

With a PACS configured (``pacs``, `medimage.results.pacs.PacsPusher`), the SR is then sent to it by
STOW-RS, after the result JSON is written: a PACS that refuses or does not answer leaves a failure record
and never fails or repeats the prediction.

Unusable objects are moved to ``quarantine/<dataset>/<key>`` with a ``.reason.json`` beside them, by the
one quarantine procedure annotate uses too (`medimage.services.quarantine`). A missing production model
raises, so the message is retried and, after the queue's redrive count, kept in the dead-letter queue.

``trial`` (the handler's silent trial) is given each labelled image after its result is written, so a
candidate on trial classifies it too; what it answers goes to ``trials/`` only, never into a result, a
review item or a batch file.
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
    review_json_key,
    review_key,
)
from medimage.core.objects import ObjectRef
from medimage.inference.service import InferenceService, PredictionResult
from medimage.results.pacs import PacsPusher, PushOutcome
from medimage.results.writer import finding_of, write_results
from medimage.services.ports import ObjectStore
from medimage.services.quarantine import Moved, quarantine_object

BATCH_FILE = "prediction_output.txt"
REVIEW_MARK = "needs_review"  # the third column of a batch file line routed to a clinician


def _name_in_dataset(dataset: str, key: str) -> str:
    """The key below ``incoming/unlabeled/<dataset>/`` (sub-folders kept, as in the result's key)."""
    own_prefix = f"{UNLABELED_PREFIX}{dataset}/"
    return key[len(own_prefix) :] if key.startswith(own_prefix) else key.rsplit("/", 1)[-1]


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
    needs_review: bool = False
    pacs: PushOutcome | None = None  # the SR's push to the PACS, when one is configured


def _utcnow() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


SilentRun = Callable[[PredictionResult, bytes, str, str | None], None]


class DropLabeler:
    def __init__(
        self,
        service: InferenceService,
        store: ObjectStore,
        clock: Callable[[], str] = _utcnow,
        pacs: PacsPusher | None = None,
        trial: SilentRun | None = None,
    ) -> None:
        self.service = service
        self.store = store
        self._clock = clock
        self.pacs = pacs
        self.trial = trial

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
        name = _name_in_dataset(dataset, ref.key)
        record = {
            "key": ref.key,
            "dataset": dataset,
            "file": filename,
            "label": result.label,
            "probabilities": result.probabilities,
            "confidence": result.confidence,
            "needs_review": result.needs_review,
            "review_reason": result.review_reason,
            "review_key": review_key(dataset, name) if result.needs_review else None,
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
        # The SR and FHIR report first, so the result JSON never names a report that is not there.
        record["results"] = write_results(
            self.store, dataset, ref.key, data, finding_of(record, ref.identity)
        )
        if result.needs_review:  # the exact bytes that were classified, then the result beside them
            self.store.put_bytes(review_key(dataset, name), data)
            self.store.put_json(review_json_key(dataset, name), record)
        self.store.put_json(result_key, record)
        if self.trial is not None:  # after the answer is stored; it never raises
            self.trial(result, data, "s3", ref.key)
        return LabelOutcome(
            "labeled",
            ref.key,
            dataset,
            filename,
            result.label,
            result,
            needs_review=result.needs_review,
            pacs=self._push(dataset, record["results"].get("sr_key"), result_key),
        )

    def _push(self, dataset: str, sr_key: str | None, result_key: str) -> PushOutcome | None:
        """The SR to the PACS, read back from where it was just written (only with a PACS configured)."""
        if self.pacs is None or not sr_key:
            return None
        sr = self.store.get_bytes(sr_key)
        return None if sr is None else self.pacs.push(sr, dataset, sr_key, result_key)

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
        review = bool(existing.get("needs_review"))
        if reported_in == batch_key:  # this same batch, redelivered
            return LabelOutcome("labeled", ref.key, dataset, filename, label, needs_review=review)
        if reported_in and self.store.exists(reported_in):
            return LabelOutcome("duplicate", ref.key, dataset, filename, label, needs_review=review)
        self.store.put_json(
            result_key, {**existing, "batch_output_key": batch_key}
        )  # its batch never finished
        return LabelOutcome("labeled", ref.key, dataset, filename, label, needs_review=review)

    def quarantine(self, key: str, dataset: str | None, exc: RejectedInput) -> LabelOutcome:
        moved = quarantine_object(self.store, key, dataset, exc, self._clock(), stage="inference")
        status = "quarantined" if moved is Moved.MOVED else "gone"
        return LabelOutcome(status, key, dataset, reason=exc.as_reason())

    def write_batch_files(self, outcomes: Iterable[LabelOutcome], batch: str) -> dict[str, str]:
        """One ``prediction_output.txt`` per dataset of the batch; {dataset: key}."""
        lines: dict[str, list[str]] = {}
        for outcome in outcomes:
            if outcome.status == "labeled" and outcome.dataset:
                mark = f" {REVIEW_MARK}" if outcome.needs_review else ""
                lines.setdefault(outcome.dataset, []).append(f"{outcome.filename} {outcome.label}{mark}")
        written = {}
        for dataset, rows in sorted(lines.items()):
            key = batch_output_key(dataset, batch)
            self.store.put_text(key, "\n".join(sorted(rows)) + "\n")
            written[dataset] = key
        return written
