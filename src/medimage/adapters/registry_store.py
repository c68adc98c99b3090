"""The production pointer in S3, swapped with conditional writes so concurrent promotions cannot lose one.

``update`` reads ``production.json`` with its ETag, applies a pure change (``core.registry``) and writes
it back with ``PutObject IfMatch=<etag>`` (or ``IfNoneMatch=*`` when there is no pointer yet). If another
writer got there first S3 answers 412 (PreconditionFailed; 409 ConditionalRequestConflict while a write
is in flight) and the change is re-applied to the new pointer, up to ``attempts`` times. moto 5.2 honours
both headers on PutObject, so the same code runs in local mode and in the tests.

A write whose answer is lost (a read timeout, a 5xx after the object was stored) must not be applied
twice: botocore's retry of it meets a 412 (the ETag moved on: to our own write), and a blind re-apply
would roll back two versions instead of one. So every write carries a fresh id, and the pointer keeps
the ids of its last ``KEPT_WRITES`` writes (``writes``, newest first): an update that finds its own id
there has already happened and stops.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable
from typing import Any

from medimage.adapters.s3 import S3ObjectStore
from medimage.adapters.transient import TransientError, transient_aws_errors
from medimage.core import layout
from medimage.core.registry import ProductionPointer

# How many write ids production.json keeps: far more than the writers that can race one update.
KEPT_WRITES = 20


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

    def _read(self, dataset: str) -> tuple[ProductionPointer | None, str | None, list[str]]:
        key = layout.production_pointer_key(dataset)
        with transient_aws_errors(f"reading s3://{self.bucket}/{key}"):
            data, etag = self._store.get_json_with_etag(key)
        if data is None:
            return None, None, []
        return ProductionPointer.from_dict(data), etag, [str(w) for w in data.get("writes") or []]

    def read(self, dataset: str) -> tuple[ProductionPointer | None, str | None]:
        """The pointer and its ETag, or (None, None) before the first promotion."""
        pointer, etag, _ = self._read(dataset)
        return pointer, etag

    def pointer(self, dataset: str) -> ProductionPointer | None:
        return self._read(dataset)[0]

    def update(
        self, dataset: str, change: Callable[[ProductionPointer | None], ProductionPointer]
    ) -> ProductionPointer:
        """Apply ``change`` to the current pointer exactly once (compare-and-swap on the ETag).

        A transient failure of the write is retried here too: the next read tells whether it landed."""
        key = layout.production_pointer_key(dataset)
        write_id = uuid.uuid4().hex
        for attempt in range(self._attempts):
            current, etag, writes = self._read(dataset)
            if current is not None and write_id in writes:
                return current  # our write landed, only its answer was lost
            new = change(current)
            if new == current:
                return new
            document = {**new.to_dict(), "writes": [write_id, *writes][:KEPT_WRITES]}
            try:
                with transient_aws_errors(f"writing s3://{self.bucket}/{key}"):
                    if self._store.put_json_if(key, document, etag):
                        return new
            except TransientError:
                if attempt == self._attempts - 1:
                    raise
            self._sleep(random.uniform(0, min(2.0, 0.05 * 2**attempt)))
        raise RegistryConflict(f"{key} changed under {self._attempts} attempts to update it")
