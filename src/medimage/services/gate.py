"""The Gate task: decide whether a trained model may be promoted, and record the decision.

The challenger's numbers come from the ``evaluation.json`` the trainer packed into ``model.tar.gz``
(``FinalMetricDataList`` is only copied into gate.json for reference: it is empty when a job logs no
metric lines). The champion's numbers must be on the same test manifest: when production was trained on
this very manifest version its registry entry already holds them (and its published ``evaluation.json``
its per-image results); otherwise, or when the challenger has per-image results to pair and the champion's
files lack them, the champion's served model file is run (LiteRT) over this manifest's test split, so both
are judged on the same images, image by image.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from medimage.core import layout
from medimage.core.errors import GateInputError
from medimage.core.executions import ModelTask
from medimage.core.gate import Champion, GateConfig, decide
from medimage.core.presets import get_preset
from medimage.core.registry import ModelEntry
from medimage.core.test_metrics import TestMetrics
from medimage.services.ports import ArtifactReader, ChampionEvaluator, ObjectStore, PointerReader


@dataclass(frozen=True)
class GateRequest(ModelTask):
    preset: str
    manifest_version: str
    manifest_prefix: str

    @classmethod
    def from_event(cls, event: dict[str, Any]) -> GateRequest:
        common = ModelTask.fields(event, GateInputError)
        try:
            return cls(
                **common,
                preset=str(event["preset"]),
                manifest_version=str(event["manifest_version"]),
                manifest_prefix=str(event["manifest_prefix"]),
            )
        except KeyError as exc:
            raise GateInputError(f"the gate input lacks {exc}") from None


def read_json_member(files: dict[str, bytes], name: str) -> dict[str, Any]:
    try:
        return json.loads(files[name])
    except KeyError:
        raise GateInputError(f"model.tar.gz has no {name}: the trainer's contract requires it") from None
    except json.JSONDecodeError as exc:
        raise GateInputError(f"{name} in model.tar.gz is not JSON: {exc}") from None


class GateService:
    def __init__(
        self,
        store: ObjectStore,
        registry: PointerReader,
        artifacts: ArtifactReader,
        evaluator: ChampionEvaluator,
        min_accuracy: float | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.registry = registry
        self.artifacts = artifacts
        self.evaluator = evaluator
        self.min_accuracy = min_accuracy
        self.now = now

    def run(self, request: GateRequest, challenger: TestMetrics | None = None) -> dict[str, Any]:
        """Judge the model on its own ``evaluation.json``, or on ``challenger``: its figures measured on
        the request's test split (`medimage model submit`, for a model trained on another split)."""
        if challenger is None:
            challenger = self._challenger(request)
        config = GateConfig.from_preset(get_preset(request.preset), self.min_accuracy)
        pointer = self.registry.pointer(request.dataset)
        champion = None if pointer is None else self._champion(pointer.current, request, challenger)
        decision = decide(challenger, config, champion)
        gate_key = layout.model_prefix(request.dataset, request.version) + "gate.json"
        record = {
            "dataset": request.dataset,
            "version": request.version,
            "preset": request.preset,
            "manifest_version": request.manifest_version,
            "model_artifacts": request.training.model_artifacts,
            "training_job_status": request.training.status,
            "final_metric_data_list": request.training.final_metrics,
            "decided_at": self.now().isoformat(),
            **decision.to_dict(),
        }
        self.store.put_json(gate_key, record)
        return {
            "passed": decision.passed,
            "outcome": decision.outcome,
            "images_needed": decision.images_needed,
            "class_images_needed": decision.class_images_needed,
            "version": request.version,
            "reasons": decision.reasons,
            "accuracy": challenger.accuracy,
            "champion_version": None if champion is None else champion.version,
            "gate_key": gate_key,
        }

    def _challenger(self, request: GateRequest) -> TestMetrics:
        files = self.artifacts.read_members(request.training.model_artifacts)
        evaluation = read_json_member(files, "evaluation.json")
        model_json = read_json_member(files, "model.json")
        trained_on = model_json.get("manifest_version")
        if trained_on not in (None, request.manifest_version):
            raise GateInputError(
                f"the model was trained on manifest {trained_on}, not on {request.manifest_version}"
            )
        if "test" not in evaluation:
            raise GateInputError("evaluation.json has no 'test' metrics")
        return TestMetrics.from_evaluation(evaluation["test"], request.manifest_version)

    def _champion(self, entry: ModelEntry, request: GateRequest, challenger: TestMetrics) -> Champion:
        stored = entry.metrics
        if stored.get("manifest_version") == request.manifest_version and stored.get("n") == challenger.n:
            published = self._published_test_metrics(request.dataset, entry.version, request.manifest_version)
            if published is not None and published.n == challenger.n:
                return Champion(entry.version, published)
            if not challenger.has_predictions:
                return Champion(entry.version, TestMetrics.from_dict(stored))
        if stored.get("labels") and tuple(stored["labels"]) != challenger.labels:
            # Not comparable whatever the test set; decide() reports it from the stored numbers.
            return Champion(entry.version, TestMetrics.from_dict(stored))
        measured = self.evaluator.evaluate(entry, request.manifest_prefix, request.manifest_version)
        return Champion(entry.version, measured)

    def _published_test_metrics(
        self, dataset: str, version: str, manifest_version: str
    ) -> TestMetrics | None:
        """The champion's own test results with their per-image predictions, from the evaluation.json
        promote published; None when it has none (a model trained before they were recorded)."""
        evaluation = self.store.get_json(layout.model_prefix(dataset, version) + "evaluation.json")
        test = (evaluation or {}).get("test") if isinstance(evaluation, dict) else None
        if not isinstance(test, dict) or "predicted" not in test:
            return None
        return TestMetrics.from_evaluation(test, manifest_version)
