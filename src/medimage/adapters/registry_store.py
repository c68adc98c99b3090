"""The production pointer in S3, swapped with conditional writes so concurrent promotions cannot lose one.

``update`` reads ``production.json`` with its ETag, applies a pure change (``core.registry``) and writes
it back with ``PutObject IfMatch=<etag>`` (or ``IfNoneMatch=*`` when there is no pointer yet). If another
writer got there first S3 answers 412 (PreconditionFailed; 409 ConditionalRequestConflict while a write
is in flight) and the change is re-applied to the new pointer, up to ``attempts`` times. moto 5.2 honours
both headers on PutObject, so the same code runs in local mode and in the tests.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

from medimage.adapters.s3 import S3ObjectStore
from medimage.adapters.transient import TransientError, transient_aws_errors
from medimage.core import layout
from medimage.core.registry import ProductionPointer


class RegistryConflict(TransientError):
    """Other promotions kept winning the race; the state machine retries the whole task later."""

    code = "registry_conflict"


class S3RegistryStore:
    def __init__(
        self,
        bucket: str,
        s3: Any | None = None,
        attempts: int = 8,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.bucket = bucket
        self._store = S3ObjectStore(bucket, s3)
        self._attempts = attempts
        self._sleep = sleep

    def read(self, dataset: str) -> tuple[ProductionPointer | None, str | None]:
        """The pointer and its ETag, or (None, None) before the first promotion."""
        key = layout.production_pointer_key(dataset)
        with transient_aws_errors(f"reading s3://{self.bucket}/{key}"):
            data, etag = self._store.get_json_with_etag(key)
        return (None, None) if data is None else (ProductionPointer.from_dict(data), etag)

    def pointer(self, dataset: str) -> ProductionPointer | None:
        return self.read(dataset)[0]

    def update(
        self, dataset: str, change: Callable[[ProductionPointer | None], ProductionPointer]
    ) -> ProductionPointer:
        """Apply ``change`` to the current pointer atomically (compare-and-swap on the ETag)."""
        key = layout.production_pointer_key(dataset)
        for attempt in range(self._attempts):
            current, etag = self.read(dataset)
            new = change(current)
            if new == current:
                return new
            with transient_aws_errors(f"writing s3://{self.bucket}/{key}"):
                if self._store.put_json_if(key, new.to_dict(), etag):
                    return new
            self._sleep(random.uniform(0, min(2.0, 0.05 * 2**attempt)))
        raise RegistryConflict(f"{key} changed under {self._attempts} attempts to update it")
