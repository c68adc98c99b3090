"""Patient-aware, deterministic split assignment.

The split of an image is a pure function of its group (the patient id, or the content hash where no
patient id exists), the dataset name and the preset ratios. So an image never moves between splits when
new data arrives, and one patient never straddles train and test.
"""

from __future__ import annotations

import hashlib

from medimage.core.presets import SPLITS


def group_of(patient_id: str | None, sha256: str) -> str:
    return f"patient:{patient_id}" if patient_id else f"sha256:{sha256}"


def unit_interval(dataset: str, group: str) -> float:
    """A stable, uniformly spread number in [0, 1) for a group."""
    digest = hashlib.sha256(f"{dataset}\x00{group}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign_split(dataset: str, group: str, ratios: dict[str, float]) -> str:
    point = unit_interval(dataset, group)
    cumulative = 0.0
    for split in SPLITS:
        cumulative += ratios[split]
        if point < cumulative:
            return split
    return SPLITS[-1]
