"""Dataset presets: one declarative JSON file each (``medimage/presets/*.json``).

A preset says which classes exist, how a label is read from an upload's folder and file name, how a
patient id is read from a file name, the split ratios and the gate thresholds. Local mode, tests and the
deployed stack all read these same files.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

from medimage.core.errors import RejectedInput, UnknownPreset

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class LabelRule:
    """Maps an upload folder (case-insensitive), optionally with a file-name substring, to a label."""

    folder: str
    label: str
    filename_contains: str | None = None

    def matches(self, folder: str, filename: str) -> bool:
        if folder.casefold() != self.folder.casefold():
            return False
        return self.filename_contains is None or self.filename_contains.casefold() in filename.casefold()


@dataclass(frozen=True)
class GateThresholds:
    min_accuracy: float
    min_recall: dict[str, float] = field(default_factory=dict)
    # Share of test images the model must label without review (at its own review threshold); None: no floor.
    min_coverage: float | None = None


@dataclass(frozen=True)
class DicomAcceptance:
    """Which DICOM acquisitions a dataset takes (preset JSON ``dicom``): an empty tuple accepts any value.

    A chest preset takes CR/DX images of the CHEST in PA or AP view; a lateral view is another picture of
    the same patient that the model was never trained to read, so it is quarantined with a reason.
    A value the header leaves empty is accepted (many exports omit these optional tags)."""

    modality: tuple[str, ...] = ()
    body_part: tuple[str, ...] = ()
    view_position: tuple[str, ...] = ()

    def check(self, modality: str, body_part: str, view_position: str) -> None:
        """RejectedInput (``dicom_wrong_modality`` / ``dicom_wrong_body_part`` / ``dicom_wrong_view``)."""
        for tag, value, allowed, code in (
            ("Modality", modality, self.modality, "dicom_wrong_modality"),
            ("BodyPartExamined", body_part, self.body_part, "dicom_wrong_body_part"),
            ("ViewPosition", view_position, self.view_position, "dicom_wrong_view"),
        ):
            if allowed and value and value.strip().upper() not in allowed:
                raise RejectedInput(
                    f"the DICOM {tag} is '{value}'; this dataset takes {', '.join(allowed)}", code
                )


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    classes: tuple[str, ...] | None
    label_rules: tuple[LabelRule, ...]
    patient_id_patterns: tuple[re.Pattern[str], ...]
    split_ratios: dict[str, float]
    gate: GateThresholds
    image_size: int
    channels: int
    # Trainer defaults this dataset needs (``train.py`` option names without the dashes, e.g.
    # ``"acquisition-augment": true``); explicit hyperparameters still win. Checked by the trainer.
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    dicom: DicomAcceptance = field(default_factory=DicomAcceptance)

    @property
    def folder_is_label(self) -> bool:
        """The ``folders`` preset: no rules, the folder name itself is the label."""
        return not self.label_rules

    def label_for(self, folder: str, filename: str) -> str:
        """The class of an upload, from its label folder and file name, or RejectedInput."""
        if not folder:
            raise RejectedInput("the key has no label folder: expected <dataset>/<label>/<file>", "no_label")
        if self.folder_is_label:
            label = folder
        else:
            label = next((r.label for r in self.label_rules if r.matches(folder, filename)), "")
        if not label:
            raise RejectedInput(
                f"no label rule of preset '{self.name}' matches folder '{folder}' and file '{filename}'",
                "unknown_label",
            )
        if self.classes is not None and label not in self.classes:
            raise RejectedInput(f"label '{label}' is not a class of preset '{self.name}'", "unknown_label")
        return label

    def patient_id(self, filename: str) -> str | None:
        """The patient id encoded in a file name, or None where the preset has no rule for it."""
        for pattern in self.patient_id_patterns:
            match = pattern.search(filename)
            if match:
                return match.group(1)
        return None

    def classes_for(self, labels: set[str]) -> tuple[str, ...]:
        """The class order: the preset's own, or the sorted labels seen (``folders``)."""
        return self.classes if self.classes is not None else tuple(sorted(labels))


def _parse(raw: dict[str, Any]) -> Preset:
    split = {k: float(raw["split"][k]) for k in SPLITS}
    if abs(sum(split.values()) - 1.0) > 1e-6 or any(v < 0 for v in split.values()):
        raise ValueError(f"preset {raw['name']}: split ratios must be non-negative and sum to 1: {split}")
    classes = tuple(raw["classes"]) if raw.get("classes") else None
    rules = tuple(LabelRule(**rule) for rule in raw.get("label_rules", []))
    if classes is not None:
        stray = {r.label for r in rules} - set(classes)
        if stray:
            raise ValueError(f"preset {raw['name']}: rules name labels that are not classes: {sorted(stray)}")
    gate = raw.get("gate", {})
    training = raw.get("training", {})
    return Preset(
        name=raw["name"],
        description=raw.get("description", ""),
        classes=classes,
        label_rules=rules,
        patient_id_patterns=tuple(re.compile(p) for p in raw.get("patient_id_patterns", [])),
        split_ratios=split,
        gate=GateThresholds(
            min_accuracy=float(gate.get("min_accuracy", 0.0)),
            min_recall={k: float(v) for k, v in gate.get("min_recall", {}).items()},
            min_coverage=_optional_fraction(raw["name"], "gate.min_coverage", gate.get("min_coverage")),
        ),
        image_size=int(training.get("image_size", 128)),
        channels=int(training.get("channels", 1)),
        hyperparameters=_hyperparameters(raw["name"], training.get("hyperparameters", {})),
        dicom=_dicom_acceptance(raw["name"], raw.get("dicom", {})),
    )


def _dicom_acceptance(preset: str, raw: Any) -> DicomAcceptance:
    fields = ("modality", "body_part", "view_position")
    if not isinstance(raw, dict) or set(raw) - set(fields):
        raise ValueError(f"preset {preset}: dicom takes only {', '.join(fields)} (lists of values)")
    values = {}
    for name in fields:
        listed = raw.get(name, [])
        if not isinstance(listed, list) or not all(isinstance(v, str) for v in listed):
            raise ValueError(f"preset {preset}: dicom.{name} must be a list of text values")
        values[name] = tuple(v.upper() for v in listed)
    return DicomAcceptance(**values)


def _hyperparameters(preset: str, raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict) or not all(isinstance(v, (bool, int, float, str)) for v in raw.values()):
        raise ValueError(
            f"preset {preset}: training.hyperparameters must map names to numbers, booleans or text"
        )
    reserved = {"preset", "dataset", "manifest-version", "image-size"} & set(raw)
    if reserved:
        raise ValueError(f"preset {preset}: training.hyperparameters cannot set {sorted(reserved)}")
    return dict(raw)


@cache
def all_presets() -> dict[str, Preset]:
    presets: dict[str, Preset] = {}
    for entry in resources.files("medimage.presets").iterdir():
        if entry.name.endswith(".json"):
            preset = _parse(json.loads(entry.read_text(encoding="utf-8")))
            presets[preset.name] = preset
    return presets


def preset_names() -> list[str]:
    return sorted(all_presets())


def get_preset(name: str) -> Preset:
    try:
        return all_presets()[name]
    except KeyError:
        raise UnknownPreset(f"unknown preset '{name}'; known presets: {', '.join(preset_names())}") from None


def _optional_fraction(preset: str, name: str, value: Any) -> float | None:
    if value is None:
        return None
    fraction = float(value)
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"preset {preset}: {name} must lie in [0, 1], got {value}")
    return fraction
