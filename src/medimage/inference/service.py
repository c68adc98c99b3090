"""Inference as the handlers use it: pick the dataset, get its production model, predict, time it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from functools import cache
from typing import Any

from medimage.core.errors import RejectedInput
from medimage.core.images import ImageLimits
from medimage.inference.cache import LoadedModel, ModelCache
from medimage.inference.decode import decode_pixels, decode_with_size
from medimage.inference.settings import InferenceSettings

# Why an explain request got no heatmap (``heatmap_error.code``).
NO_ACTIVATION_MAPS = "no_activation_maps"


@dataclass(frozen=True)
class PredictionResult:
    """One answer, with what its log line and metrics need (latency, payload size, model version)."""

    dataset: str
    label: str
    probabilities: dict[str, float]
    model_version: str
    model_sha256: str
    latency_ms: float
    payload_bytes: int
    confidence: float = 0.0
    needs_review: bool = False
    review_reason: str | None = None
    # Explain only: whether it was asked, the PNG overlay (`Heatmap.api_body`) or why there is none.
    explained: bool = False
    heatmap: dict[str, Any] | None = field(default=None, repr=False)
    heatmap_error: dict[str, str] | None = None
    # The decoded input and what decoding took, for a silent trial to run the candidate on the same
    # pixels (`medimage.inference.trial`); never part of an answer.
    pixels: Any = field(default=None, repr=False, compare=False)
    decode_ms: float = 0.0

    def api_body(self) -> dict[str, Any]:
        """The answer of ``POST /predict``; ``heatmap`` (+ ``heatmap_error``) only when explain was asked."""
        body: dict[str, Any] = {
            "label": self.label,
            "probabilities": self.probabilities,
            "confidence": self.confidence,
            "needs_review": self.needs_review,
            "review_reason": self.review_reason,
            "model_version": self.model_version,
            "latency_ms": self.latency_ms,
        }
        if self.explained:
            body["heatmap"] = self.heatmap
            if self.heatmap_error is not None:
                body["heatmap_error"] = self.heatmap_error
        return body


@cache
def _with_max_bytes(limits: ImageLimits, max_bytes: int) -> ImageLimits:
    """The limits of one request, made once per size limit rather than per request."""
    return replace(limits, max_bytes=max_bytes)


@dataclass
class InferenceService:
    """Predictions for the API and drop-to-label: the model cache, the settings, the upload limits."""

    cache: ModelCache
    config: InferenceSettings
    limits: ImageLimits = field(default_factory=ImageLimits)

    def resolve_dataset(self, name: str | None) -> str:
        if name is None or name == "":
            return self.config.default_dataset
        # Imported for a named dataset only: the bucket layout is 2 ms of a cold start the default skips.
        from medimage.core.layout import check_dataset_name

        check_dataset_name(name)
        if name not in self.config.datasets:
            raise RejectedInput(
                f"unknown dataset '{name}'; this endpoint serves: {', '.join(self.config.datasets)}",
                "unknown_dataset",
            )
        return name

    def predict(
        self,
        data: bytes,
        dataset: str | None = None,
        max_bytes: int | None = None,
        explain: bool = False,
    ) -> PredictionResult:
        """Classify one image; RejectedInput for bad images, NoProductionModel/ModelUnavailable for 503.

        ``explain`` adds the predicted class's activation map as a PNG at the upload's aspect ratio; a
        model without the activation-map output answers with ``heatmap`` None and a ``heatmap_error``.
        Without it nothing of the map is read, rendered or imported."""
        name = self.resolve_dataset(dataset)
        model = self.cache.get(name)
        classifier = model.classifier
        threshold = self.config.review_threshold
        start = time.perf_counter()
        limits = _with_max_bytes(self.limits, max_bytes or self.limits.max_bytes)
        heatmap: dict[str, Any] | None = None
        heatmap_error: dict[str, str] | None = None
        if explain:
            array, size = decode_with_size(data, classifier.spec, limits)
            decoded = time.perf_counter()
            prediction = classifier.classify_array(array, explain=True, review_threshold=threshold)
            if prediction.heatmap is not None:
                from medimage.inference.heatmap import render_heatmap

                heatmap = render_heatmap(prediction.heatmap, size).api_body()
            else:
                heatmap_error = {
                    "code": NO_ACTIVATION_MAPS,
                    "message": f"model {model.version} of '{name}' has no class-activation output; "
                    "retrain it with this version of the trainer to get heatmaps",
                }
        else:
            array = decode_pixels(data, classifier.spec, limits)
            decoded = time.perf_counter()
            prediction = classifier.classify_array(array, review_threshold=threshold)
        latency_ms = round((time.perf_counter() - start) * 1000, 3)
        return PredictionResult(
            dataset=name,
            label=prediction.label,
            probabilities=prediction.probabilities,
            model_version=model.version,
            model_sha256=model.sha256,
            latency_ms=latency_ms,
            payload_bytes=len(data),
            confidence=prediction.confidence,
            needs_review=prediction.needs_review,
            review_reason=prediction.review_reason,
            explained=explain,
            heatmap=heatmap,
            heatmap_error=heatmap_error,
            pixels=array,
            decode_ms=round((decoded - start) * 1000, 3),
        )

    def health(self) -> dict[str, Any]:
        """What this container serves now; never fetches, so a health check stays cheap."""
        loaded = self.cache.loaded()
        return {
            "status": "ok",
            "default_dataset": self.config.default_dataset,
            "datasets": {
                ds: self._model_facts(loaded[ds]) if ds in loaded else {"model_version": None}
                for ds in self.config.datasets
            },
        }

    def _model_facts(self, model: LoadedModel) -> dict[str, Any]:
        """A served model as a client shows it: version, date, variant, review thresholds (one figure, and
        by label where the model has one per label and the deployment sets none), explain."""
        classifier = model.classifier
        threshold = self.config.review_threshold
        by_class = classifier.class_thresholds if threshold is None else None
        return {
            "model_version": model.version,
            "variant": model.variant,
            "trained_at": classifier.meta.get("trained_at"),
            "review_threshold": threshold if threshold is not None else classifier.review_threshold,
            "review_thresholds": None
            if by_class is None
            else dict(zip(classifier.labels, by_class, strict=True)),
            "explain": classifier.supports_explain,
        }
