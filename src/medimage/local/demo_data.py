"""The demo's input files: what a ``<label>/<image>`` tree holds, which valid images are held back to be
labeled by the promoted model, and the duplicate the catalog must count once."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

from medimage.core.decoding import inspect_image
from medimage.core.errors import MedimageError, RejectedInput
from medimage.core.label_tree import walk_label_tree
from medimage.core.presets import Preset


@dataclass
class UploadFile:
    folder: str
    name: str
    path: Path
    label: str | None  # None: the preset rejects it, or it is not a valid image


def scan(root: Path, preset: Preset) -> list[UploadFile]:
    """Every file ``walk_label_tree`` takes (those training reads), with the preset's label, or None where
    it would be rejected (the demo uploads those too, to show them quarantined)."""
    files = []
    for folder, path in walk_label_tree(root):
        label: str | None
        try:
            label = preset.label_for(folder, path.name)
            inspect_image(path.read_bytes())
        except (RejectedInput, OSError):
            label = None
        files.append(UploadFile(folder, path.name, path, label))
    if not files:
        raise MedimageError(
            f"{root} has no label folders with image files: expected <label>/<image> inside it"
        )
    return files


def hold_back(files: list[UploadFile], share: float) -> tuple[list[UploadFile], list[UploadFile]]:
    """A deterministic share of each class's valid images, chosen by a hash of the file name."""
    if not 0 <= share < 1:
        raise ValueError("--holdout-share must be at least 0 and below 1")
    held: list[UploadFile] = []
    for label in sorted({f.label for f in files if f.label}):
        members = sorted(
            (f for f in files if f.label == label), key=lambda f: hashlib.sha256(f.name.encode()).hexdigest()
        )
        held.extend(members[: math.floor(len(members) * share)])
    held_ids = {id(f) for f in held}
    return [f for f in files if id(f) not in held_ids], held


def duplicate_of(original: UploadFile) -> UploadFile:
    """The same bytes under another name: the catalog must count it once, as a duplicate."""
    copy = original.path.with_name(f"{original.path.stem}-copy{original.path.suffix}")
    copy.write_bytes(original.path.read_bytes())
    return UploadFile(original.folder, copy.name, copy, original.label)
