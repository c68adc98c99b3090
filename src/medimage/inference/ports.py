"""The ports of the inference use cases; drop-to-label's bucket is `medimage.services.ports.ObjectStore`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from medimage.inference.model import ModelError


@dataclass(frozen=True)
class ServingPointer:
    """The serving view of ``production.json``: only the current model's fields, read leniently so the
    inference image needs nothing of the registry's history rules (``medimage.core.registry``)."""

    dataset: str
    version: str
    model_key: str
    model_sha256: str
    # The model on silent trial beside production (``candidate``), None when there is none or its entry is
    # unusable: a broken candidate must never stop production from serving.
    candidate: ServingPointer | None = None

    @classmethod
    def from_dict(cls, data: Any, dataset: str) -> ServingPointer:
        if not isinstance(data, dict):
            raise ModelError(f"production.json of '{dataset}' is not a JSON object")
        missing = [k for k in ("version", "model_key", "model_sha256") if not isinstance(data.get(k), str)]
        if missing:
            raise ModelError(f"production.json of '{dataset}' lacks {', '.join(missing)}")
        candidate = None
        if isinstance(data.get("candidate"), dict):
            try:
                candidate = cls.from_dict({**data["candidate"], "candidate": None}, dataset)
            except ModelError:
                candidate = None
        return cls(dataset, data["version"], data["model_key"], data["model_sha256"].lower(), candidate)

    @property
    def model_file(self) -> str:
        return self.model_key.rsplit("/", 1)[-1]


class ModelSource(Protocol):
    """Where production models come from."""

    def read_pointer(self, dataset: str) -> dict[str, Any] | None:
        """The parsed ``production.json`` of a dataset, or None when no model was ever promoted."""
        ...

    def download(self, pointer: ServingPointer) -> Path:
        """A local directory holding the pointer's model file, ``model.json`` and ``labels.txt``."""
        ...


class PairSink(Protocol):
    """Where a silent trial's pairs are written (the data bucket's ``trials/``)."""

    def put_bytes(self, key: str, data: bytes, content_type: str = ...) -> None: ...
