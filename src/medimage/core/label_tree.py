"""The files of a folder-per-label tree (``root/<label>/**/<file>``), by one rule for every command.

Training, uploading, the demo and the benchmarks read the same tree; with one walker they see the same
images. A file is
taken when it sits under a label folder, no part of its path is hidden (a dot name) or operating-system
litter, and its suffix is one the pipeline reads as an image (``IMAGE_SUFFIXES``). Everything else is
skipped with its reason, for the commands that report what they left out.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import NamedTuple

from medimage.core import layout
from medimage.core.errors import RejectedInput
from medimage.core.images import IMAGE_SUFFIXES

# Folders and files that file managers and archivers leave in a tree (compared case-insensitively).
OS_LITTER = frozenset(
    name.casefold()
    for name in (
        "Thumbs.db",
        "ehthumbs.db",
        "desktop.ini",
        ".DS_Store",
        "__MACOSX",
        "$RECYCLE.BIN",
        "System Volume Information",
        "Icon\r",
    )
)

NOT_IN_LABEL_FOLDER = "not in a label folder"
HIDDEN = "hidden"
OS_CLUTTER = "operating-system litter"
NOT_AN_IMAGE_SUFFIX = "not an image suffix"


class TreeFile(NamedTuple):
    """A file to read: the top folder's name (the label folder) and its path."""

    label: str
    path: Path


class SkippedFile(NamedTuple):
    path: Path
    reason: str


@dataclass(frozen=True)
class LabelTree:
    root: Path
    files: list[TreeFile] = field(default_factory=list)
    skipped: list[SkippedFile] = field(default_factory=list)


def skip_reason(relative: PurePath) -> str | None:
    """Why a file at ``relative`` (to the tree's root) is not taken, or None when it is."""
    parts = relative.parts
    if any(part.casefold() in OS_LITTER for part in parts):
        return OS_CLUTTER
    if any(part.startswith(".") for part in parts):
        return HIDDEN
    if len(parts) < 2:
        return NOT_IN_LABEL_FOLDER
    if relative.suffix.lower() not in IMAGE_SUFFIXES:
        return NOT_AN_IMAGE_SUFFIX
    return None


def labeled_destination(dataset: str, relative: PurePath) -> tuple[str | None, str | None]:
    """Where a file at ``relative`` (to a folder-per-label tree's root, local or an S3 prefix) goes in the
    data bucket: ``(incoming/labeled/<dataset>/<relative>, None)``, or ``(None, why it is left out)``. The
    one mapping of `medimage ingest`, local folder or S3 prefix; the key is checked with the layout parser
    the annotate Lambda uses."""
    reason = skip_reason(relative)
    if reason is not None:
        return None, reason
    key = f"{layout.LABELED_PREFIX}{layout.check_dataset_name(dataset)}/{relative.as_posix()}"
    try:
        layout.parse_labeled_key(key)
    except RejectedInput as exc:
        return None, exc.message
    return key, None


def scan_label_tree(root: Path) -> LabelTree:
    """Every file under ``root``, taken or skipped, in sorted order of its path below ``root``."""
    root = Path(root)
    if not root.is_dir():
        raise NotADirectoryError(f"{root} is not a directory")
    tree = LabelTree(root)
    found = sorted((p.relative_to(root) for p in root.rglob("*") if p.is_file()), key=lambda r: r.parts)
    for relative in found:
        reason = skip_reason(relative)
        if reason is None:
            tree.files.append(TreeFile(relative.parts[0], root / relative))
        else:
            tree.skipped.append(SkippedFile(root / relative, reason))
    return tree


def walk_label_tree(root: Path) -> Iterator[TreeFile]:
    """``(label, path)`` for each image file of ``root/<label>/**``, sorted, by the rule above."""
    yield from scan_label_tree(root).files


def image_files(root: Path) -> list[Path]:
    """Every image file under ``root`` at any depth, sorted, by the same rule but for the label folder: the
    folders of images the benchmarks read."""
    root = Path(root)
    if not root.is_dir():
        raise NotADirectoryError(f"{root} is not a directory")
    found = sorted((p.relative_to(root) for p in root.rglob("*") if p.is_file()), key=lambda r: r.parts)
    return [
        root / relative
        for relative in found
        if skip_reason(relative) in (None, NOT_IN_LABEL_FOLDER) and relative.suffix.lower() in IMAGE_SUFFIXES
    ]


def files_by_label(root: Path) -> dict[str, list[Path]]:
    """The files ``walk_label_tree`` takes, grouped by label folder (labels and files sorted)."""
    grouped: dict[str, list[Path]] = {}
    for label, path in walk_label_tree(root):
        grouped.setdefault(label, []).append(path)
    return dict(sorted(grouped.items()))
