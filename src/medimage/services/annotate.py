"""Annotate one labeled upload: validate, label, deduplicate and catalogue it, or quarantine it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from enum import StrEnum
from functools import partial
from typing import Any

from medimage.core import layout
from medimage.core.catalog import CatalogRecord, RecordOutcome
from medimage.core.decoding import inspect_image
from medimage.core.errors import RejectedInput
from medimage.core.images import DEFAULT_LIMITS, ImageLimits, check_size
from medimage.core.patients import pseudonymous_patient_id
from medimage.core.splits import assign_split, group_of
from medimage.services.datasets import DatasetResolver
from medimage.services.ports import Catalog, ObjectStore
from medimage.services.quarantine import Moved, quarantine_object


class Status(StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    REDELIVERED = "redelivered"
    QUARANTINED = "quarantined"
    IGNORED = "ignored"


@dataclass(frozen=True)
class AnnotateResult:
    key: str
    status: Status
    dataset: str | None = None
    label: str | None = None
    split: str | None = None
    sha256: str | None = None
    reason: dict[str, str] | None = None
    quarantine_key: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


class Annotator:
    def __init__(
        self,
        store: ObjectStore,
        catalog: Catalog,
        resolver: DatasetResolver,
        limits: ImageLimits = DEFAULT_LIMITS,
        clock: Any = None,
        patient_salt: str = "",
    ) -> None:
        self.store = store
        self.catalog = catalog
        self.resolver = resolver
        self.limits = limits
        # Keys the pseudonym of a DICOM PatientID; empty: DICOM ids are not used (file-name rules only).
        self.patient_salt = patient_salt
        self._clock = clock or (lambda: datetime.now(UTC))

    def annotate(self, key: str) -> AnnotateResult:
        """``key`` is already URL-decoded. Never raises for bad input; raises for AWS failures (retried)."""
        now = self._clock()
        dataset = layout.dataset_of_key(key)
        try:
            parsed = layout.parse_labeled_key(key)
            dataset = parsed.dataset
            if parsed.is_commit:
                return AnnotateResult(
                    key=key,
                    status=Status.IGNORED,
                    dataset=dataset,
                    reason={"code": "commit_marker", "message": "handled by split"},
                )
            preset = self.resolver.preset_for(dataset)
            label = preset.label_for(parsed.folder, parsed.filename)
            obj = self.store.read(key, self.limits.max_bytes)
            if obj is None:
                return self._gone(key, dataset)
            check_size(obj.size, self.limits)
            info = inspect_image(obj.data or b"", self.limits)
            patient = preset.patient_id(parsed.filename)
            if info.dicom is not None:
                tags = info.dicom
                preset.dicom.check(tags.modality, tags.body_part, tags.view_position)
                patient = pseudonymous_patient_id(tags.patient_id, self.patient_salt) or patient
        except RejectedInput as error:
            at = now.isoformat()
            record = (
                None
                if dataset is None
                else partial(self.catalog.record_quarantine, dataset, key, error.code, error.message, at)
            )
            moved = quarantine_object(self.store, key, dataset, error, at, "annotate", record)
            if moved is Moved.GONE and dataset is not None:
                return self._gone(key, dataset)
            target = layout.quarantine_key(dataset, key)
            return AnnotateResult(
                key=key,
                status=Status.QUARANTINED,
                dataset=dataset,
                reason=error.as_reason(),
                quarantine_key=target,
            )

        group = group_of(patient, info.sha256)
        record = CatalogRecord(
            dataset=dataset,
            sha256=info.sha256,
            key=key,
            label=label,
            patient_id=patient,
            group=group,
            split=assign_split(dataset, group, preset.split_ratios),
            width=info.width,
            height=info.height,
            mode=info.mode,
            format=info.format,
            size_bytes=info.size_bytes,
            catalogued_at=now.isoformat(),
        )
        outcome = self.catalog.record_image(record)
        status = {
            RecordOutcome.NEW: Status.ACCEPTED,
            RecordOutcome.DUPLICATE: Status.DUPLICATE,
            RecordOutcome.REDELIVERED: Status.REDELIVERED,
        }[outcome]
        return AnnotateResult(
            key=key, status=status, dataset=dataset, label=label, split=record.split, sha256=info.sha256
        )

    def _gone(self, key: str, dataset: str) -> AnnotateResult:
        """The object is no longer there: a redelivery after quarantine, or a delete by its owner. A
        quarantine whose catalog record is missing (moved by an older procedure that deleted first) gets
        it from the stored reason."""
        reason = self.store.get_json(layout.quarantine_reason_key(dataset, key))
        if isinstance(reason, dict):
            self.catalog.record_quarantine(
                dataset,
                key,
                str(reason.get("code")),
                str(reason.get("message")),
                str(reason.get("quarantined_at")),
            )
            return AnnotateResult(
                key=key,
                status=Status.QUARANTINED,
                dataset=dataset,
                reason={"code": "already_quarantined", "message": "moved earlier"},
                quarantine_key=layout.quarantine_key(dataset, key),
            )
        return AnnotateResult(
            key=key,
            status=Status.IGNORED,
            dataset=dataset,
            reason={"code": "gone", "message": "the object no longer exists"},
        )
