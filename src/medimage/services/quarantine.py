"""Moving a rejected object to quarantine: the one procedure and record format (annotate, drop-to-label).

Order: copy the object to ``quarantine/<dataset>/<key>``, write ``<that>.reason.json``, record it (the
caller's ``record``: annotate's catalog entry), and only then delete the original, so nothing is deleted
before its copy, its reason and its record are stored. A retry after a crash in between repeats the steps
harmlessly; a redelivery after the move finds the original gone and everything else in place.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum

from medimage.core import layout
from medimage.core.errors import MedimageError
from medimage.services.ports import ObjectStore


class Moved(StrEnum):
    MOVED = "moved"  # this call moved it
    GONE = "gone"  # not there any more (moved by an earlier delivery, or deleted by its owner)


def quarantine_reason(
    error: MedimageError, key: str, bucket: str, stage: str, quarantined_at: str
) -> dict[str, str]:
    """``{code, message, original_key, bucket, stage, quarantined_at}`` (docs/CONTRACTS.md)."""
    return {
        "code": error.code,
        "message": error.message,
        "original_key": key,
        "bucket": bucket,
        "stage": stage,
        "quarantined_at": quarantined_at,
    }


def quarantine_object(
    store: ObjectStore,
    key: str,
    dataset: str | None,
    error: MedimageError,
    quarantined_at: str,
    stage: str,
    record: Callable[[], None] | None = None,
) -> Moved:
    """Move ``key`` to quarantine with its reason (idempotent); ``record`` runs before the delete."""
    if not store.exists(key):
        return Moved.GONE
    store.copy(key, layout.quarantine_key(dataset, key))
    store.put_json(
        layout.quarantine_reason_key(dataset, key),
        quarantine_reason(error, key, store.bucket, stage, quarantined_at),
    )
    if record is not None:
        record()
    store.delete(key)
    return Moved.MOVED
