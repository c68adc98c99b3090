"""Close a batch: on ``_commit``, write a new manifest version from the catalog and start training.

Commits may run twice (a redelivered event) or at once (two ``_commit`` uploads). A manifest version is a
pure function of the catalogued content, so both compute the same files and the same execution name;
every file of a version is written only if absent (the first complete write stands, the version is never
rewritten), the execution starts only after all of them are stored, and ``latest.json`` only moves
forward (a compare-and-swap to a version of more images), so a slower commit of an older catalog never
points it back.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice
from typing import Any

from medimage.core import layout
from medimage.core.errors import AnnotationInProgress, ManifestConflict
from medimage.core.executions import commit_execution_name, execution_input
from medimage.core.manifest_table import ManifestTable
from medimage.core.manifests import (
    CHANNEL_OF_SPLIT,
    CsvRow,
    csv_header,
    csv_lines,
    iter_csv,
    sagemaker_manifest_head,
    sagemaker_manifest_keys,
)
from medimage.core.presets import SPLITS
from medimage.core.shards import DEFAULT_SHARD_BYTES, DEFAULT_SHARD_THRESHOLD, SHARD_PLAN, plan_shards
from medimage.services.datasets import DatasetResolver
from medimage.services.ports import Backlog, Catalog, ObjectStore, Workflow

# Rows per piece of a streamed manifest file (about 2 MB of CSV).
ROWS_PER_PIECE = 10_000
# Compare-and-swap attempts on latest.json: each lost one means another commit moved it meanwhile.
LATEST_ATTEMPTS = 8


@dataclass(frozen=True)
class SplitResult:
    dataset: str
    status: str  # "written" | "nothing_new" | "too_few_new"
    message: str
    version: str | None = None
    new_images: int = 0
    execution_arn: str | None = None
    stats: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in self.__dict__.items() if v not in (None, {})}
        return data


class Splitter:
    def __init__(
        self,
        store: ObjectStore,
        catalog: Catalog,
        resolver: DatasetResolver,
        workflow: Workflow | None,
        min_new_images: int,
        clock: Any = None,
        backlog: Backlog | None = None,
        wait_s: float = 0.0,
        sleep: Any = time.sleep,
        work_dir: str | None = None,
        shard_threshold: int = DEFAULT_SHARD_THRESHOLD,
        shard_bytes: int = DEFAULT_SHARD_BYTES,
    ) -> None:
        self.shard_threshold = shard_threshold  # from this many images a version is trained from shards
        self.shard_bytes = shard_bytes
        self.work_dir = work_dir  # where the manifest table lives while it is built (default: the temp dir)
        self.store = store
        self.catalog = catalog
        self.resolver = resolver
        self.workflow = workflow
        self.min_new_images = min_new_images
        self.backlog = backlog
        self.wait_s = wait_s
        self._sleep = sleep
        self._clock = clock or (lambda: datetime.now(UTC))

    def previous_version(self, dataset: str) -> str | None:
        latest = self.store.get_json(layout.latest_manifest_key(dataset))
        return latest["version"] if latest else None

    def previous_shas(self, dataset: str, version: str) -> Iterator[str]:
        """The sha256s of a manifest version, read from its CSVs as they stream."""
        prefix = layout.manifest_prefix(dataset, version)
        for split in SPLITS:
            lines = self.store.read_lines(f"{prefix}{split}.csv")
            if lines is None:
                raise RuntimeError(f"manifest {version} of {dataset} lacks {split}.csv")
            for row in iter_csv(lines):
                yield row["sha256"]

    def _advance_latest(self, dataset: str, version: str, created_at: str, images: int) -> None:
        """Point ``latest.json`` at ``version`` unless it already names one of at least as many images
        (the catalog only grows: more images is newer). Compare-and-swap, retried when it moved."""
        key = layout.latest_manifest_key(dataset)
        for _ in range(LATEST_ATTEMPTS):
            current, etag = self.store.get_json_with_etag(key)
            if current and (current.get("version") == version or self._images_of(dataset, current) >= images):
                return
            latest = {"version": version, "created_at": created_at, "images": images}
            if self.store.put_json_if(key, latest, etag):
                return
        raise ManifestConflict(f"{key} kept changing while moving it to {version}")

    def _images_of(self, dataset: str, latest: dict[str, Any]) -> int:
        if "images" in latest:
            return int(latest["images"])
        stats = self.store.get_json(layout.manifest_prefix(dataset, latest["version"]) + "stats.json") or {}
        return int(stats.get("images", 0))

    def wait_for_annotation(self) -> None:
        """A commit closes what was uploaded before it: wait (up to ``wait_s``) until the annotate queue
        is empty, else raise so that the event is retried instead of writing a manifest without them."""
        if self.backlog is None:
            return
        waited = 0.0
        while (pending := self.backlog.pending()) > 0:
            if waited >= self.wait_s:
                raise AnnotationInProgress(
                    f"{pending} uploads are still being annotated after {waited:.0f} s; the commit is retried"
                )
            self._sleep(5.0)
            waited += 5.0

    def commit(self, dataset: str) -> SplitResult:
        """Read the catalog a page at a time into a table on disk, then write each split as it streams
        out of it: memory stays flat in the number of images."""
        preset = self.resolver.preset_for(layout.check_dataset_name(dataset))
        self.wait_for_annotation()
        with ManifestTable(dataset, self.work_dir) as table:
            for page in self.catalog.pages(dataset):
                table.add(page.records, page.duplicates, page.quarantined)
            previous_version = self.previous_version(dataset)
            if previous_version is not None:
                table.add_previous(self.previous_shas(dataset, previous_version))
            classes = preset.classes_for(table.labels())
            new_images = table.new_images()
            if new_images == 0:
                return SplitResult(
                    dataset,
                    "nothing_new",
                    (
                        f"nothing new since manifest {previous_version or '(none)'}: "
                        f"{table.images()} catalogued images, no manifest written"
                    ),
                    new_images=0,
                )
            if new_images < self.min_new_images:
                return SplitResult(
                    dataset,
                    "too_few_new",
                    (
                        f"{new_images} new images since manifest {previous_version or '(none)'}, "
                        f"fewer than MinNewImages={self.min_new_images}: no manifest written"
                    ),
                    new_images=new_images,
                )
            stats = table.stats(classes, self._clock())
            version = stats["version"]
            prefix = layout.manifest_prefix(dataset, version)
            for split in SPLITS:
                self._write_split(prefix, split, table.rows(split))
            sharded = int(stats["images"]) >= self.shard_threshold
            if sharded:
                plan = [
                    s.to_dict()
                    for split in SPLITS
                    for s in plan_shards(prefix, split, table.sizes(split), self.shard_bytes)
                ]
                self.store.put_json_if(f"{prefix}{SHARD_PLAN}", plan, None)  # a version's plan never changes

        stats = dict(
            stats,
            channels=CHANNEL_OF_SPLIT,
            preset=preset.name,
            previous_version=previous_version,
            input="shards" if sharded else "files",
        )
        stats_key = f"{prefix}stats.json"
        if not self.store.put_json_if(stats_key, stats, None):
            stats = self.store.get_json(stats_key) or stats  # another commit of this version wrote it first

        execution_arn = None
        if self.workflow is not None:
            execution_arn = self.workflow.start(
                commit_execution_name(dataset, version),
                execution_input(dataset, preset.name, version, self.store.bucket, prefix, shards=sharded),
            )
        # Written last: until it names this version, a retried commit redoes the same version in full.
        self._advance_latest(dataset, version, stats["created_at"], int(stats["images"]))
        return SplitResult(
            dataset,
            "written",
            (
                f"manifest {version}: {stats['totals']} ({new_images} new)"
                + ("; training started" if execution_arn else "; no state machine configured")
                + "".join(f"; WARNING: {w}" for w in stats["shortcut_audit"]["warnings"])
            ),
            version=version,
            new_images=new_images,
            execution_arn=execution_arn,
            stats=stats,
        )

    def _write_split(self, prefix: str, split: str, rows: Iterator[CsvRow]) -> None:
        """``<split>.csv`` and ``<split>.manifest`` in one pass over the split's rows, each a streamed
        upload stored only where absent (a version's files are never rewritten)."""
        csv_key, manifest_key = f"{prefix}{split}.csv", f"{prefix}{split}.manifest"
        if self.store.exists(csv_key) and self.store.exists(manifest_key):
            return
        csv_upload = self.store.start_upload(csv_key, "text/csv")
        manifest_upload = self.store.start_upload(manifest_key, "application/json")
        try:
            csv_upload.write(csv_header().encode("utf-8"))
            manifest_upload.write(sagemaker_manifest_head(self.store.bucket, csv_key).encode("utf-8"))
            while piece := list(islice(rows, ROWS_PER_PIECE)):
                csv_upload.write(csv_lines(piece).encode("utf-8"))
                manifest_upload.write(sagemaker_manifest_keys([row[0] for row in piece]).encode("utf-8"))
            manifest_upload.write(b"]")
            csv_upload.finish()
            manifest_upload.finish()
        except BaseException:
            csv_upload.abort()
            manifest_upload.abort()
            raise
