"""What the fault run uploads: real X-rays spread over the label folders, and broken files made from them
that annotate must quarantine. Apart from the run so tests can load the same images."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

from medimage.core import layout
from medimage.core.label_tree import files_by_label

DATASET = "chestxray2017-binary"
BROKEN_KINDS = ("empty", "truncated", "text", "corrupt-header")


@dataclass(frozen=True)
class Upload:
    key: str
    data: bytes


def labeled_key(folder: str, name: str) -> str:
    return f"{layout.LABELED_PREFIX}{DATASET}/{folder}/{name}"


def load_images(root: Path, count: int) -> list[Upload]:
    """``count`` images spread evenly over ``root``'s label folders and within each folder (so many
    patients, not the first few), as uploads under ``incoming/labeled/<dataset>/<folder>/``."""
    by_label = files_by_label(root)
    if not by_label:
        raise ValueError(f"{root} has no images in label folders")
    folders = sorted(by_label)
    per_folder = [count // len(folders) + (1 if i < count % len(folders) else 0) for i in range(len(folders))]
    by_folder: list[list[Upload]] = []
    for folder, wanted in zip(folders, per_folder, strict=True):
        files = by_label[folder]
        if len(files) < wanted:
            raise ValueError(f"{root / folder} has {len(files)} images, {wanted} wanted")
        picked = [files[i * len(files) // wanted] for i in range(wanted)]
        keys = [labeled_key(folder, p.relative_to(root / folder).as_posix()) for p in picked]
        by_folder.append([Upload(key, p.read_bytes()) for key, p in zip(keys, picked, strict=True)])
    # Interleaved, so that every share of the uploads holds every label.
    return [u for group in itertools.zip_longest(*by_folder) for u in group if u is not None]


def broken_uploads(images: list[Upload], n: int) -> list[Upload]:
    """``n`` files annotate must quarantine, made from the real images: empty, truncated, text, a JPEG
    whose header is overwritten; each in a label folder, so it claims to be a labeled X-ray."""
    out = []
    for i in range(n):
        kind = BROKEN_KINDS[i % len(BROKEN_KINDS)]
        source = images[i % len(images)]
        data = {
            "empty": b"",
            "truncated": source.data[: len(source.data) // 3],
            "text": b"radiology report: no image attached\n" * 8,
            "corrupt-header": source.data[:2] + b"\x00" * 200 + source.data[202:],
        }[kind]
        folder = source.key.rsplit("/", 2)[-2]
        out.append(Upload(labeled_key(folder, f"broken-{i:03d}-{kind}.jpeg"), data))
    return out
