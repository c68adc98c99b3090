"""Which preset governs a dataset: its own name, or an explicit mapping (``DATASET_PRESETS``)."""

from __future__ import annotations

import json

from medimage.core.errors import RejectedInput, UnknownPreset
from medimage.core.presets import Preset, get_preset


class DatasetResolver:
    def __init__(self, mapping: dict[str, str] | None = None) -> None:
        self.mapping = dict(mapping or {})

    @classmethod
    def from_json(cls, text: str | None) -> DatasetResolver:
        if not text or not text.strip():
            return cls()
        try:
            mapping = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"DATASET_PRESETS is not valid JSON: {exc}") from None
        if not isinstance(mapping, dict) or not all(isinstance(v, str) for v in mapping.values()):
            raise ValueError('DATASET_PRESETS must be a JSON object such as {"mydata": "folders"}')
        return cls(mapping)

    def preset_for(self, dataset: str) -> Preset:
        try:
            return get_preset(self.mapping.get(dataset, dataset))
        except UnknownPreset:
            raise RejectedInput(
                f"dataset '{dataset}' has no preset: name it after a preset or map it in DATASET_PRESETS",
                "unknown_dataset",
            ) from None
