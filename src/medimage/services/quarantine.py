"""Moving rejected objects to quarantine: copy, write the reason, and only then delete the original."""

from __future__ import annotations

from datetime import datetime

from medimage.core import layout
from medimage.core.errors import MedimageError
from medimage.services.ports import ObjectStore


def quarantine_object(
    store: ObjectStore, key: str, dataset: str | None, error: MedimageError, now: datetime, stage: str
) -> str:
    """Returns the quarantine key. Idempotent: a redelivery after the move finds the reason in place."""
    target = layout.quarantine_key(dataset, key)
    reason_key = layout.quarantine_reason_key(dataset, key)
    if store.exists(key):
        store.copy(key, target)
        store.put_json(
            reason_key,
            {
                "code": error.code,
                "message": error.message,
                "original_key": key,
                "bucket": store.bucket,
                "stage": stage,
                "quarantined_at": now.isoformat(),
            },
        )
        store.delete(key)
    return target
