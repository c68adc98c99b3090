"""Inference as the handlers use it: pick the dataset, get its production model, predict, time it."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medimage.core.errors import RejectedInput
from medimage.core.images import ImageLimits
from medimage.core.layout import check_dataset_name
from medimage.core.presets import preset_names
from medimage.inference.api import DEFAULT_MAX_REQUEST_BYTES
from medimage.inference.cache import ModelCache
from medimage.inference.decode import decode_image


@dataclass(frozen=True)
class ServingConfig:
    """Settings read from the function's environment (see template.yaml)."""

    datasets: tuple[str, ...]
    default_dataset: str
    check_interval_s: float = 60.0
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    max_object_bytes: int = 30 * 1024 * 1024

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ServingConfig:
        env = os.environ if env is None else env
        listed = [d.strip() for d in env.get("DATASETS", "").split(",") if d.strip()]
        if not listed:  # every preset-named dataset, plus the ones mapped to a preset by DATASET_PRESETS
            extra = json.loads(env.get("DATASET_PRESETS") or "{}")
            listed = [n for n in preset_names() if n != "folders"] + sorted(extra)
        default = env.get("DEFAULT_DATASET") or listed[0]
        if default not in listed:
            listed.insert(0, default)
        return cls(
            datasets=tuple(dict.fromkeys(listed)),
            default_dataset=default,
            check_interval_s=float(env.get("MODEL_CHECK_INTERVAL_S", "60")),
            max_request_bytes=int(env.get("MAX_REQUEST_BYTES", DEFAULT_MAX_REQUEST_BYTES)),
            max_object_bytes=int(env.get("MAX_IMAGE_BYTES", 30 * 1024 * 1024)),
        )


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
    config: ServingConfig
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
        limits = ImageLimits(
            max_bytes=max_bytes or self.limits.max_bytes,
            max_pixels=self.limits.max_pixels,
            min_side=self.limits.min_side,
        )
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
                ds: {"model_version": loaded[ds].version if ds in loaded else None}
                for ds in self.config.datasets
            },
        }
