"""Every port the pipeline's services need from the outside world, in one place.

The adapters (`medimage.adapters`, boto3) implement them; `tests/fakes.py` has in-memory versions the
service rules are tested on. Only value types from `medimage.core` cross these boundaries.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Protocol

from medimage.core.catalog import CatalogPage, CatalogRecord, CatalogSnapshot, RecordOutcome
from medimage.core.objects import ImportedObject, ObjectData, ObjectHead, SourceObject
from medimage.core.registry import ModelEntry, ProductionPointer
from medimage.core.test_metrics import TestMetrics


class ObjectStore(Protocol):
    """The data bucket."""

    bucket: str

    def head(self, key: str) -> ObjectHead | None: ...
    def exists(self, key: str) -> bool: ...
    def get_bytes(self, key: str) -> bytes | None: ...
    def read(self, key: str, max_bytes: int) -> ObjectData | None: ...
    def get_text(self, key: str) -> str | None: ...
    def get_json(self, key: str) -> Any | None: ...
    def put_bytes(self, key: str, data: bytes, content_type: str = ...) -> None: ...
    def put_text(self, key: str, text: str, content_type: str = ...) -> None: ...
    def put_json(self, key: str, value: Any) -> None: ...
    def put_if_absent(self, key: str, data: bytes, content_type: str = ...) -> bool:
        """Write only if nothing is stored at ``key`` (False: something already was; left as it is)."""
        ...

    def get_json_with_etag(self, key: str) -> tuple[Any | None, str | None]: ...
    def put_json_if(self, key: str, value: Any, etag: str | None) -> bool:
        """Write only if ``key`` is still at ``etag`` (None: still absent); False when it changed."""
        ...

    def copy(self, source_key: str, dest_key: str) -> None: ...
    def delete(self, key: str) -> None: ...
    def read_lines(self, key: str) -> Iterator[str] | None:
        """The text of an object line by line (ends kept), read as it streams; None when missing."""
        ...

    def start_upload(self, key: str, content_type: str = ...) -> ObjectUpload:
        """An object written in pieces (a multipart upload): memory stays flat in its size."""
        ...


class ImportCopier(Protocol):
    """Server-side copies from a source bucket into the data bucket (the bulk import). The source is only
    read (HEAD, and the copy's GET); errors it raises carry a `BulkImportProblem` code."""

    def source_head(self, bucket: str, key: str) -> SourceObject | None: ...
    def imported(self, key: str) -> ImportedObject | None:
        """The data-bucket object at ``key`` with the source ETag it was copied from (None: absent)."""
        ...

    def copy_in(self, source: SourceObject, dest_key: str) -> None:
        """CopyObject of ``source`` (as it was when headed) to ``dest_key``, recording its ETag."""
        ...

    def list_keys(self, prefix: str) -> Iterator[str]:
        """The data bucket's keys under ``prefix``."""
        ...


class ObjectUpload(Protocol):
    """An object being written in pieces; stored by ``finish`` only if nothing is at its key yet."""

    def write(self, data: bytes) -> None: ...
    def finish(self) -> bool:
        """Store it (False: something was already stored at the key; this upload is dropped)."""
        ...

    def abort(self) -> None: ...


class Catalog(Protocol):
    """One record per accepted image (dataset + sha256) and one per quarantined object."""

    def record_image(self, record: CatalogRecord) -> RecordOutcome: ...
    def record_quarantine(self, dataset: str, key: str, code: str, message: str, at: str) -> None: ...
    def snapshot(self, dataset: str) -> CatalogSnapshot: ...
    def pages(self, dataset: str) -> Iterator[CatalogPage]:
        """The dataset's catalog a page at a time, image records in sha256 order (the table's sort key)."""
        ...


class Workflow(Protocol):
    """The training state machine."""

    def start(self, name: str, payload: dict[str, Any]) -> str: ...


class Backlog(Protocol):
    """The annotate queue: how many uploads are still waiting to be annotated."""

    def pending(self) -> int: ...


class PointerReader(Protocol):
    def pointer(self, dataset: str) -> ProductionPointer | None: ...


class PointerStore(PointerReader, Protocol):
    """``models/<dataset>/production.json``, changed only by compare-and-swap."""

    def update(
        self, dataset: str, change: Callable[[ProductionPointer | None], ProductionPointer]
    ) -> ProductionPointer: ...


class ArtifactReader(Protocol):
    """The files of a training job's ``model.tar.gz``, by their path inside it."""

    def read_members(self, uri: str) -> dict[str, bytes]: ...


class ChampionEvaluator(Protocol):
    """Scores the production model on a manifest's test split."""

    def evaluate(self, entry: ModelEntry, manifest_prefix: str, manifest_version: str) -> TestMetrics: ...


class Notifier(Protocol):
    """A notification to the people who run the pipeline (an SNS topic)."""

    def publish(self, subject: str, message: str) -> None: ...
