"""The catalog record of one accepted image, the outcome of recording it, and a dataset's snapshot."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any


@dataclass(frozen=True)
class CatalogRecord:
    dataset: str
    sha256: str
    key: str
    label: str
    patient_id: str | None
    group: str
    split: str
    width: int
    height: int
    mode: str
    format: str
    size_bytes: int
    catalogued_at: str

    def to_item(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> CatalogRecord:
        fields = cls.__dataclass_fields__
        values = {k: item.get(k) for k in fields}
        for name in ("width", "height", "size_bytes"):
            values[name] = int(values[name])
        return cls(**values)  # type: ignore[arg-type]


class RecordOutcome(StrEnum):
    """What recording an accepted image did: the basis of idempotent annotation."""

    NEW = "new"  # first time these bytes were seen
    REDELIVERED = "redelivered"  # same key, same bytes again: at-least-once delivery, a no-op
    DUPLICATE = "duplicate"  # same bytes under another key: counted, not catalogued twice


@dataclass(frozen=True)
class CatalogSnapshot:
    """Every record of a dataset, with how many duplicates and quarantined objects it counted."""

    records: list[CatalogRecord]
    duplicates: int
    quarantined: dict[str, int]


@dataclass(frozen=True)
class CatalogPage:
    """One page of a dataset's catalog: its image records (in sha256 order within the page) and the
    duplicates and quarantined objects it counted. A split reads the catalog page by page."""

    records: list[CatalogRecord]
    duplicates: int
    quarantined: dict[str, int]
