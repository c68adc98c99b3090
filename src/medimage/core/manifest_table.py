"""A manifest version built from a catalog of any size, with memory that stays flat in its images.

``plan_manifest`` holds every record in memory; this table keeps them on disk instead (SQLite in a
temporary directory, a few MB of page cache), fed one catalog page at a time. It answers with the same
version, statistics and rows, in the same order, as ``plan_manifest`` on the same records: the rows of a
split sorted by key, the version a digest of the sorted sha256s, the shape audit from counts per
(label, width, height). What grows with the catalog is the file on disk (about 250 bytes an image).
"""

from __future__ import annotations

import hashlib
import sqlite3
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from medimage.core.catalog import CatalogRecord
from medimage.core.manifests import CsvRow
from medimage.core.presets import SPLITS
from medimage.core.shortcuts import audit_shape_counts

# Page cache of the table (negative: KiB). Sorts beyond it spill to temporary files.
CACHE_KIB = 16 * 1024
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class ManifestTable:
    """The records of one manifest version on disk; use as a context manager (the file is removed)."""

    def __init__(self, dataset: str, directory: str | None = None) -> None:
        self.dataset = dataset
        self._dir = tempfile.TemporaryDirectory(prefix="manifest-", dir=directory)
        self.path = Path(self._dir.name) / "manifest.sqlite"
        self._db = sqlite3.connect(self.path)
        for pragma in (
            "journal_mode = OFF",
            "synchronous = OFF",
            "temp_store = FILE",
            f"cache_size = -{CACHE_KIB}",
        ):
            self._db.execute(f"PRAGMA {pragma}")
        self._db.execute(
            "CREATE TABLE images (sha256 TEXT PRIMARY KEY, key TEXT NOT NULL, label TEXT NOT NULL,"
            " patient_id TEXT NOT NULL, grp TEXT NOT NULL, split TEXT NOT NULL, width INTEGER NOT NULL,"
            " height INTEGER NOT NULL, size_bytes INTEGER NOT NULL) WITHOUT ROWID"
        )
        self._db.execute("CREATE TABLE previous (sha256 TEXT PRIMARY KEY) WITHOUT ROWID")
        self._newest = _EPOCH
        self.duplicates = 0
        self.quarantined: Counter[str] = Counter()

    def __enter__(self) -> ManifestTable:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._db.close()
        self._dir.cleanup()

    def add(self, records: Iterable[CatalogRecord], duplicates: int = 0, quarantined: Any = None) -> None:
        """One catalog page: its image records and what it counted of duplicates and quarantined objects."""
        rows = []
        for r in records:
            if r.split not in SPLITS:
                raise ValueError(f"catalog record {r.key} has an unknown split '{r.split}'")
            self._newest = max(self._newest, datetime.fromisoformat(r.catalogued_at))
            rows.append(
                (
                    r.sha256,
                    r.key,
                    r.label,
                    r.patient_id or "",
                    r.group,
                    r.split,
                    r.width,
                    r.height,
                    r.size_bytes,
                )
            )
        self._db.executemany("INSERT INTO images VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        self.duplicates += duplicates
        self.quarantined.update(quarantined or {})

    def add_previous(self, shas: Iterable[str]) -> None:
        """The sha256s of the previous manifest version (what is not among them is new)."""
        self._db.executemany("INSERT OR IGNORE INTO previous VALUES (?)", ((s,) for s in shas))

    def labels(self) -> set[str]:
        return {label for (label,) in self._db.execute("SELECT DISTINCT label FROM images")}

    def images(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM images").fetchone()[0])

    def new_images(self) -> int:
        query = "SELECT COUNT(*) FROM images WHERE sha256 NOT IN (SELECT sha256 FROM previous)"
        return int(self._db.execute(query).fetchone()[0])

    def version(self) -> str:
        """``plan_manifest``'s version: the newest catalogued time and a digest of the sorted sha256s."""
        digest = hashlib.sha256()
        for n, (sha,) in enumerate(self._db.execute("SELECT sha256 FROM images ORDER BY sha256")):
            digest.update(b"\n" + sha.encode() if n else sha.encode())
        return f"{self._newest.astimezone(UTC):%Y%m%dT%H%M%SZ}-{digest.hexdigest()[:8]}"

    def stats(self, classes: Iterable[str], now: datetime) -> dict[str, Any]:
        """``plan_manifest``'s statistics, key for key."""
        class_list = list(classes)
        by_split_label: dict[tuple[str, str], int] = {
            (split, label): n
            for split, label, n in self._db.execute(
                "SELECT split, label, COUNT(*) FROM images GROUP BY split, label"
            )
        }
        shapes = {
            (label, width, height): n
            for label, width, height, n in self._db.execute(
                "SELECT label, width, height, COUNT(*) FROM images GROUP BY label, width, height"
            )
        }
        patients = self._db.execute(
            "SELECT COUNT(DISTINCT grp) FROM images WHERE substr(grp, 1, 8) = 'patient:'"
        ).fetchone()[0]
        stats: dict[str, Any] = {
            "dataset": self.dataset,
            "classes": class_list,
            "images": self.images(),
            "new_images": self.new_images(),
            "patients": int(patients),
            "counts": {
                split: {label: by_split_label.get((split, label), 0) for label in class_list}
                for split in SPLITS
            },
            "totals": {
                split: sum(n for (s, _), n in by_split_label.items() if s == split) for split in SPLITS
            },
            "duplicates": self.duplicates,
            "quarantined": dict(sorted(self.quarantined.items())),
            "shortcut_audit": audit_shape_counts(shapes, class_list),
        }
        stats["version"] = self.version()
        stats["created_at"] = now.astimezone(UTC).isoformat()
        return stats

    def rows(self, split: str) -> Iterator[CsvRow]:
        """The CSV rows of a split, sorted by key as ``plan_manifest`` sorts them."""
        yield from self._db.execute(
            "SELECT key, label, sha256, patient_id FROM images WHERE split = ? ORDER BY key, sha256",
            (split,),
        )

    def sizes(self, split: str) -> Iterator[int]:
        """The image sizes of a split's rows, in the order of ``rows``."""
        query = "SELECT size_bytes FROM images WHERE split = ? ORDER BY key, sha256"
        for (size,) in self._db.execute(query, (split,)):
            yield int(size)
