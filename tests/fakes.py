"""In-memory implementations of the service ports (`medimage.services.ports`), for testing the rules.

They behave as the adapters do where the rules depend on it: missing objects read as None, a catalog
record is inserted once per (dataset, sha256), and the production pointer is swapped only by
compare-and-swap (a stale write loses and is re-applied).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from medimage.core.catalog import CatalogPage, CatalogRecord, CatalogSnapshot, RecordOutcome
from medimage.core.objects import ImportedObject, ObjectData, ObjectHead, SourceObject
from medimage.core.registry import ProductionPointer


class InMemoryObjectStore:
    """The data bucket as a dict of key -> bytes; ``log`` lists every write, copy and delete in order."""

    def __init__(self, bucket: str = "fake-bucket", objects: dict[str, bytes] | None = None) -> None:
        self.bucket = bucket
        self.objects: dict[str, bytes] = dict(objects or {})
        self.log: list[tuple[str, str]] = []

    def head(self, key: str) -> ObjectHead | None:
        data = self.objects.get(key)
        return None if data is None else ObjectHead(len(data), hashlib.md5(data).hexdigest())

    def exists(self, key: str) -> bool:
        return key in self.objects

    def get_bytes(self, key: str) -> bytes | None:
        return self.objects.get(key)

    def read(self, key: str, max_bytes: int) -> ObjectData | None:
        data = self.objects.get(key)
        if data is None:
            return None
        return ObjectData(len(data), data if len(data) <= max_bytes else None)

    def get_text(self, key: str) -> str | None:
        data = self.get_bytes(key)
        return None if data is None else data.decode("utf-8")

    def get_json(self, key: str) -> Any | None:
        text = self.get_text(key)
        return None if text is None else json.loads(text)

    def put_bytes(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        self.objects[key] = data
        self.log.append(("put", key))

    def put_text(self, key: str, text: str, content_type: str = "text/plain") -> None:
        self.put_bytes(key, text.encode("utf-8"), content_type)

    def put_json(self, key: str, value: Any) -> None:
        self.put_bytes(key, json.dumps(value, sort_keys=True).encode("utf-8"), "application/json")

    def put_if_absent(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> bool:
        if key in self.objects:
            return False
        self.put_bytes(key, data, content_type)
        return True

    def get_json_with_etag(self, key: str) -> tuple[Any | None, str | None]:
        data = self.objects.get(key)
        return (None, None) if data is None else (json.loads(data), hashlib.md5(data).hexdigest())

    def put_json_if(self, key: str, value: Any, etag: str | None) -> bool:
        if self.get_json_with_etag(key)[1] != etag:
            return False
        self.put_json(key, value)
        return True

    def copy(self, source_key: str, dest_key: str) -> None:
        self.objects[dest_key] = self.objects[source_key]
        self.log.append(("copy", dest_key))

    def delete(self, key: str) -> None:
        self.objects.pop(key, None)
        self.log.append(("delete", key))

    def read_lines(self, key: str) -> Iterator[str] | None:
        data = self.objects.get(key)
        return None if data is None else iter(data.decode("utf-8").splitlines(keepends=True))

    def start_upload(self, key: str, content_type: str = "application/octet-stream") -> InMemoryUpload:
        return InMemoryUpload(self, key, content_type)

    def keys(self, prefix: str = "") -> list[str]:
        return sorted(k for k in self.objects if k.startswith(prefix))


class InMemoryUpload:
    """An object written in pieces into an `InMemoryObjectStore`; stored on ``finish`` if still absent."""

    def __init__(self, store: InMemoryObjectStore, key: str, content_type: str) -> None:
        self.store, self.key, self.content_type = store, key, content_type
        self.parts: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.parts.append(data)

    def finish(self) -> bool:
        return self.store.put_if_absent(self.key, b"".join(self.parts), self.content_type)

    def abort(self) -> None:
        self.parts.clear()


class InMemoryCatalog:
    def __init__(self, page_size: int = 1000) -> None:
        self.page_size = page_size
        self.images: dict[tuple[str, str], CatalogRecord] = {}
        self.duplicate_keys: dict[tuple[str, str], set[str]] = {}
        self.quarantined: dict[tuple[str, str], dict[str, str]] = {}

    def record_image(self, record: CatalogRecord) -> RecordOutcome:
        slot = (record.dataset, record.sha256)
        first = self.images.get(slot)
        if first is None:
            self.images[slot] = record
            return RecordOutcome.NEW
        if first.key == record.key:
            return RecordOutcome.REDELIVERED
        self.duplicate_keys.setdefault(slot, set()).add(record.key)
        return RecordOutcome.DUPLICATE

    def record_quarantine(self, dataset: str, key: str, code: str, message: str, at: str) -> None:
        self.quarantined[(dataset, key)] = {"code": code, "message": message, "at": at}

    def snapshot(self, dataset: str) -> CatalogSnapshot:
        records = [r for (ds, _), r in self.images.items() if ds == dataset]
        duplicates = sum(len(keys) for (ds, _), keys in self.duplicate_keys.items() if ds == dataset)
        codes = Counter(q["code"] for (ds, _), q in self.quarantined.items() if ds == dataset)
        return CatalogSnapshot(records=records, duplicates=duplicates, quarantined=dict(codes))

    def pages(self, dataset: str) -> Iterator[CatalogPage]:
        """As DynamoDB pages a partition: images in sha256 order, then quarantined objects."""
        snapshot = self.snapshot(dataset)
        records = sorted(snapshot.records, key=lambda r: r.sha256)
        for start in range(0, len(records), self.page_size):
            yield CatalogPage(records[start : start + self.page_size], 0, {})
        yield CatalogPage([], snapshot.duplicates, snapshot.quarantined)


class InMemoryPointerStore:
    """``production.json`` per dataset with a version counter as its ETag. ``interleave`` runs once,
    between a read and the write that follows it, to stand in for a concurrent promotion."""

    def __init__(self) -> None:
        self.pointers: dict[str, tuple[ProductionPointer, int]] = {}
        self.interleave: Callable[[], None] | None = None
        self.lost_races = 0

    def pointer(self, dataset: str) -> ProductionPointer | None:
        found = self.pointers.get(dataset)
        return None if found is None else found[0]

    def put(self, dataset: str, pointer: ProductionPointer) -> None:
        self.pointers[dataset] = (pointer, self.pointers.get(dataset, (pointer, 0))[1] + 1)

    def update(
        self, dataset: str, change: Callable[[ProductionPointer | None], ProductionPointer]
    ) -> ProductionPointer:
        for _ in range(8):
            current, etag = self.pointers.get(dataset, (None, 0))
            new = change(current)
            if new == current:
                return new
            if self.interleave is not None:
                step, self.interleave = self.interleave, None
                step()
            if self.pointers.get(dataset, (None, 0))[1] != etag:
                self.lost_races += 1
                continue
            self.pointers[dataset] = (new, etag + 1)
            return new
        raise RuntimeError("the pointer kept changing")


class RecordingWorkflow:
    """The state machine: an execution per name, started at most once."""

    def __init__(self) -> None:
        self.executions: dict[str, dict[str, Any]] = {}

    def start(self, name: str, payload: dict[str, Any]) -> str:
        self.executions.setdefault(name, payload)
        return f"arn:aws:states:local:000000000000:execution:training:{name}"


class FixedBacklog:
    def __init__(self, *pending: int) -> None:
        self._pending = list(pending)

    def pending(self) -> int:
        return self._pending.pop(0) if len(self._pending) > 1 else self._pending[0]


class InMemoryArtifacts:
    """Training outputs by their S3 URI: the members of each ``model.tar.gz``."""

    def __init__(self, outputs: dict[str, dict[str, bytes]] | None = None) -> None:
        self.outputs = dict(outputs or {})

    def read_members(self, uri: str) -> dict[str, bytes]:
        return self.outputs[uri]


class InMemoryImportCopier:
    """Source buckets (``sources``: bucket -> key -> bytes, only ever read) copied into ``store``, each
    copy's source ETag kept in ``metadata`` as S3 keeps it in the object's metadata. ``fail`` maps a source
    key to the `BulkImportProblem` code its copy raises; a source changed since its HEAD is not copied."""

    def __init__(self, store: InMemoryObjectStore, sources: dict[str, dict[str, bytes]]) -> None:
        self.store = store
        self.sources = sources
        self.metadata: dict[str, str] = {}
        self.fail: dict[str, str] = {}
        self.copied: list[str] = []

    def source_head(self, bucket: str, key: str) -> SourceObject | None:
        data = self.sources.get(bucket, {}).get(key)
        if data is None:
            return None
        return SourceObject(bucket, key, len(data), hashlib.md5(data).hexdigest(), "image/png")

    def imported(self, key: str) -> ImportedObject | None:
        data = self.store.objects.get(key)
        return None if data is None else ImportedObject(len(data), self.metadata.get(key, ""))

    def copy_in(self, source: SourceObject, dest_key: str) -> None:
        from medimage.core.errors import BulkImportProblem

        if source.key in self.fail:
            raise BulkImportProblem("the copy failed", self.fail[source.key])
        data = self.sources[source.bucket][source.key]
        if hashlib.md5(data).hexdigest() != source.etag:
            raise BulkImportProblem("the source changed while it was copied", "source_changed")
        self.store.put_bytes(dest_key, data)
        self.metadata[dest_key] = source.etag
        self.copied.append(dest_key)

    def list_keys(self, prefix: str) -> Iterator[str]:
        return iter(self.store.keys(prefix))
