"""Gate and promote on fakes: every decision is recorded, only a passed gate is promoted."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from fakes import InMemoryArtifacts, InMemoryObjectStore, InMemoryPointerStore

from medimage.core.registry import ChampionChanged, ModelEntry, ProductionPointer, sha256_hex
from medimage.core.test_metrics import TestMetrics
from medimage.services.gate import GateInputError, GateRequest, GateService
from medimage.services.promote import PromoteRefused, PromoteRequest, PromoteService, rollback_production

DS = "chestxray2017-binary"
MANIFEST = "20261201T120000Z-0a1b2c3d"
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
LABELS = ["normal", "pneumonia"]


def evaluation(accuracy: float, n: int = 100) -> dict:
    return {
        "n": n,
        "accuracy": accuracy,
        "labels": LABELS,
        "per_class": {label: {"recall": accuracy, "support": n // 2} for label in LABELS},
    }


def job(version: str, accuracy: float, manifest: str = MANIFEST) -> tuple[str, dict[str, bytes]]:
    uri = f"s3://fake-bucket/training/{DS}/{version}/output/model.tar.gz"
    files = {
        "model.tflite": f"weights of {version}".encode(),
        "model.json": json.dumps({"manifest_version": manifest, "model_file": "model.tflite"}).encode(),
        "labels.txt": b"normal\npneumonia\n",
        "evaluation.json": json.dumps({"val": evaluation(accuracy), "test": evaluation(accuracy)}).encode(),
    }
    return uri, files


def training(version: str, uri: str) -> dict:
    return {
        "TrainingJobName": version,
        "TrainingJobStatus": "Completed",
        "ModelArtifacts": {"S3ModelArtifacts": uri},
    }


def event(version: str, uri: str) -> dict:
    return {
        "dataset": DS,
        "preset": DS,
        "manifest_version": MANIFEST,
        "manifest_prefix": f"manifests/{DS}/{MANIFEST}/",
        "bucket": "fake-bucket",
        "training": training(version, uri),
    }


class CountingEvaluator:
    def __init__(self, accuracy: float) -> None:
        self.accuracy, self.calls = accuracy, 0

    def evaluate(self, entry, manifest_prefix, manifest_version) -> TestMetrics:
        self.calls += 1
        return TestMetrics.from_evaluation(evaluation(self.accuracy), manifest_version)


class World:
    def __init__(self) -> None:
        self.store = InMemoryObjectStore()
        self.registry = InMemoryPointerStore()
        self.artifacts = InMemoryArtifacts()
        self.evaluator = CountingEvaluator(0.5)

    def train(self, version: str, accuracy: float, manifest: str = MANIFEST) -> dict:
        uri, files = job(version, accuracy, manifest)
        self.artifacts.outputs[uri] = files
        return event(version, uri)

    def gate(self, ev: dict) -> dict:
        service = GateService(self.store, self.registry, self.artifacts, self.evaluator, now=lambda: NOW)
        return service.run(GateRequest.from_event(ev))

    def promote(self, ev: dict) -> dict:
        service = PromoteService(self.store, self.registry, self.artifacts, now=lambda: NOW)
        return service.run(PromoteRequest.from_event(ev))


def test_a_first_model_above_the_thresholds_is_recorded_passed_and_promoted_files_first():
    world = World()
    ev = world.train("v1", 0.97)
    decision = world.gate(ev)
    assert decision["passed"] is True and decision["champion_version"] is None
    assert world.store.get_json(decision["gate_key"])["passed"] is True
    result = world.promote(ev)
    pointer = world.registry.pointer(DS)
    assert pointer.version == "v1" == result["version"]
    assert pointer.current.model_sha256 == sha256_hex(b"weights of v1")
    for name in ("model.tflite", "model.json", "labels.txt", "evaluation.json"):
        assert world.store.exists(f"models/{DS}/v1/{name}")


def test_a_failed_gate_is_recorded_and_promote_refuses_it_whatever_the_event_says():
    world = World()
    ev = world.train("v1", 0.40)
    decision = world.gate(ev)
    assert decision["passed"] is False and decision["reasons"]
    with pytest.raises(PromoteRefused):
        world.promote(ev)
    assert world.registry.pointer(DS) is None and world.store.keys(f"models/{DS}/v1/") == [
        f"models/{DS}/v1/gate.json"
    ]


def test_the_champion_on_the_same_manifest_is_judged_on_its_stored_numbers_else_re_measured():
    world = World()
    first = world.train("v1", 0.97)
    assert world.gate(first)["passed"]
    world.promote(first)
    worse = world.gate(world.train("v2", 0.95))
    assert worse["passed"] is False and worse["champion_version"] == "v1" and world.evaluator.calls == 0
    # Production trained on another manifest: its numbers are re-measured on this one.
    entry = world.registry.pointer(DS).current
    moved = ModelEntry(
        entry.version, entry.model_key, entry.model_sha256, entry.promoted_at, {"manifest_version": "old"}
    )
    world.registry.put(DS, ProductionPointer(DS, (moved,), ()))
    assert world.gate(world.train("v3", 0.96))["passed"] is True and world.evaluator.calls == 1


def test_a_model_trained_on_another_manifest_is_not_gated():
    world = World()
    with pytest.raises(GateInputError):
        world.gate(world.train("v1", 0.97, manifest="some-other-version"))


def test_a_promotion_racing_another_is_re_applied_and_refused_when_its_champion_changed():
    world = World()
    ev = world.train("v1", 0.97)
    world.gate(ev)
    rival = ModelEntry("v0", f"models/{DS}/v0/model.tflite", "0" * 64, NOW.isoformat())
    # Another promotion lands between promote's read of the pointer and its conditional write.
    world.registry.interleave = lambda: world.registry.put(DS, ProductionPointer(DS, (rival,), ()))
    with pytest.raises(ChampionChanged):
        world.promote(ev)
    assert world.registry.lost_races == 1
    assert world.registry.pointer(DS).version == "v0"


def test_rollback_swaps_back_only_to_a_model_whose_bytes_are_still_there():
    world = World()
    for version, accuracy in (("v1", 0.96), ("v2", 0.98)):
        ev = world.train(version, accuracy)
        assert world.gate(ev)["passed"]
        world.promote(ev)
    v1_model = world.store.get_bytes(f"models/{DS}/v1/model.tflite")
    world.store.put_bytes(f"models/{DS}/v1/model.tflite", b"tampered")
    with pytest.raises(PromoteRefused):
        rollback_production(world.store, world.registry, DS, None, NOW)
    assert world.registry.pointer(DS).version == "v2"
    world.store.put_bytes(f"models/{DS}/v1/model.tflite", v1_model)
    assert rollback_production(world.store, world.registry, DS, None, NOW).version == "v1"


def per_image_evaluation(truth: list[int], predicted: list[int]) -> dict:
    """A test split as the trainer writes it now: figures plus each image's label and prediction."""
    import numpy as np

    from medimage.core.metrics import evaluate

    split = evaluate(truth, np.eye(len(LABELS))[predicted], LABELS)
    return {**split, "truth": truth, "predicted": predicted}


def train_with_predictions(world: World, version: str, truth: list[int], predicted: list[int]) -> dict:
    uri, files = job(version, 0.0)
    split = per_image_evaluation(truth, predicted)
    files["evaluation.json"] = json.dumps({"val": split, "test": split}).encode()
    world.artifacts.outputs[uri] = files
    return event(version, uri)


def test_the_champion_is_compared_image_by_image_from_its_published_evaluation():
    world = World()
    truth = [0] * 100 + [1] * 100
    first = train_with_predictions(world, "v1", truth, [0] * 96 + [1] * 4 + [1] * 96 + [0] * 4)
    assert world.gate(first)["outcome"] == "pass"
    world.promote(first)
    # Right on 4 images the champion misses, wrong on 2 it gets: not worse, paired on the same images.
    better = [0] * 98 + [1] * 2 + [1] * 98 + [0] * 2
    better[0], better[100] = 1, 0
    result = world.gate(train_with_predictions(world, "v2", truth, better))
    record = world.store.get_json(result["gate_key"])
    assert result["outcome"] == "pass" and world.evaluator.calls == 0
    assert record["paired"]["challenger_only_right"] == 4 and record["paired"]["champion_only_right"] == 2
    assert record["intervals"]["recall"]["pneumonia"]["n"] == 100


def test_an_undecided_gate_reports_the_images_needed_and_promote_refuses_it():
    world = World()
    truth = [0] * 80 + [1] * 40
    ev = train_with_predictions(world, "v1", truth, [0] * 80 + [1] * 35 + [0] * 5)  # pneumonia 0.875
    result = world.gate(ev)
    assert result["passed"] is False and result["outcome"] == "insufficient_evidence"
    assert result["class_images_needed"]["pneumonia"] > 40 and result["images_needed"] > 120
    with pytest.raises(PromoteRefused):
        world.promote(ev)
    assert world.registry.pointer(DS) is None


def test_a_champion_published_without_per_image_results_is_re_measured_to_pair_them():
    world = World()
    first = world.train("v1", 0.97)
    world.gate(first)
    world.promote(first)
    truth = [0] * 50 + [1] * 50
    result = world.gate(train_with_predictions(world, "v2", truth, truth))
    assert result["champion_version"] == "v1" and world.evaluator.calls == 1
