"""Inference as the handlers use it: pick the dataset, get its production model, predict, time it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from medimage.core.errors import RejectedInput
from medimage.core.images import ImageLimits
from medimage.core.layout import check_dataset_name
from medimage.inference.cache import ModelCache
from medimage.inference.decode import decode_image
from medimage.inference.settings import InferenceSettings


@dataclass(frozen=True)
class PredictionResult:
    dataset: str
    label: str
    probabilities: dict[str, float]
    model_version: str
    model_sha256: str
    latency_ms: float
    payload_bytes: int

    @property
    def confidence(self) -> float:
        return self.probabilities[self.label]

    def api_body(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "probabilities": self.probabilities,
            "model_version": self.model_version,
            "latency_ms": self.latency_ms,
        }


@dataclass
class InferenceService:
    cache: ModelCache
    config: InferenceSettings
    limits: ImageLimits = field(default_factory=ImageLimits)

    def resolve_dataset(self, name: str | None) -> str:
        if name is None or name == "":
            return self.config.default_dataset
        check_dataset_name(name)
        if name not in self.config.datasets:
            raise RejectedInput(
                f"unknown dataset '{name}'; this endpoint serves: {', '.join(self.config.datasets)}",
                "unknown_dataset",
            )
        return name

    def predict(
        self, data: bytes, dataset: str | None = None, max_bytes: int | None = None
    ) -> PredictionResult:
        """Classify one image; RejectedInput for bad images, NoProductionModel/ModelUnavailable for 503."""
        name = self.resolve_dataset(dataset)
        model = self.cache.get(name)
        start = time.perf_counter()
        limits = replace(self.limits, max_bytes=max_bytes or self.limits.max_bytes)
        probs: np.ndarray = model.classifier.predict_array(decode_image(data, model.classifier.spec, limits))
        prediction = model.classifier.to_prediction(probs)
        latency_ms = round((time.perf_counter() - start) * 1000, 3)
        return PredictionResult(
            dataset=name,
            label=prediction.label,
            probabilities=prediction.probabilities,
            model_version=model.version,
            model_sha256=model.sha256,
            latency_ms=latency_ms,
            payload_bytes=len(data),
        )

    def health(self) -> dict[str, Any]:
        """What this container serves now; never fetches, so a health check stays cheap."""
        loaded = self.cache.loaded()
        return {
            "status": "ok",
            "default_dataset": self.config.default_dataset,
            "datasets": {
                ds: (
                    {"model_version": loaded[ds].version, "variant": loaded[ds].variant}
                    if ds in loaded
                    else {"model_version": None}
                )
                for ds in self.config.datasets
            },
        }
