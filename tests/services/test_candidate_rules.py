"""Candidate and champion on fakes: with a trial configured, a passed model becomes the candidate beside
production (the first model is still promoted); a person promotes or drops it; retries change nothing."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from fakes import InMemoryPointerStore

sys.path.insert(0, str(Path(__file__).parent))
from test_gate_and_promote_rules import DS, NOW, World

from medimage.core.errors import RegistryError
from medimage.core.registry import (
    ChampionChanged,
    ModelEntry,
    ProductionPointer,
    drop_candidate,
    nominate,
    promote_candidate,
    rollback,
)
from medimage.services.promote import PromoteRequest, PromoteService

LATER = "2026-12-02T00:00:00+00:00"


def promote_with_trial(world: World, ev: dict) -> dict:
    service = PromoteService(world.store, world.registry, world.artifacts, now=lambda: NOW, trial=True)
    return service.run(PromoteRequest.from_event(ev))


def entry(version: str) -> ModelEntry:
    return ModelEntry(version, f"models/{DS}/{version}/model.tflite", "ab" * 32, "t0", {"accuracy": 0.9})


def pointer_with(*versions: str) -> ProductionPointer:
    return ProductionPointer(DS, tuple(entry(v) for v in reversed(versions)))


def test_with_a_trial_the_first_model_is_promoted_and_the_next_becomes_the_candidate():
    world = World()
    first = world.train("v1", 0.97)
    assert world.gate(first)["passed"]
    assert promote_with_trial(world, first)["stage"] == "production"
    second = world.train("v2", 0.98)
    assert world.gate(second)["passed"]
    result = promote_with_trial(world, second)
    assert result["stage"] == "candidate" and result["promoted"] is False
    pointer = world.registry.pointer(DS)
    assert (
        pointer.version == "v1" and pointer.candidate.version == "v2" and pointer.candidate.champion == "v1"
    )
    assert world.store.exists(f"models/{DS}/v2/model.tflite")  # published, so serving can load it
    # A retried task changes nothing, and says the same.
    assert promote_with_trial(world, second) == result
    assert world.registry.pointer(DS) == pointer
    # The pointer round-trips through its JSON.
    assert ProductionPointer.from_dict(pointer.to_dict()) == pointer


def test_without_a_trial_a_passed_model_replaces_production_as_before():
    world = World()
    for version, accuracy in (("v1", 0.97), ("v2", 0.98)):
        ev = world.train(version, accuracy)
        assert world.gate(ev)["passed"]
        assert world.promote(ev)["stage"] == "production"
    assert world.registry.pointer(DS).version == "v2" and world.registry.pointer(DS).candidate is None


def test_a_newer_candidate_replaces_the_one_on_trial_and_the_trial_is_recorded():
    current = nominate(pointer_with("v1"), entry("v2"), "v1", "t1")
    replaced = nominate(current, entry("v3"), "v1", "t2")
    assert replaced.candidate.version == "v3"
    assert replaced.trials[0] == {
        "version": "v2",
        "champion": "v1",
        "outcome": "replaced",
        "started_at": "t0",
        "ended_at": "t2",
        "by": "v3",
    }
    assert nominate(replaced, entry("v2"), "v1", "t3") == replaced  # a trial that ended is not reopened
    assert nominate(replaced, entry("v1"), "v1", "t3") == replaced  # nor is production nominated
    with pytest.raises(ChampionChanged):
        nominate(replaced, entry("v4"), "v0", "t3")
    with pytest.raises(RegistryError):
        nominate(None, entry("v1"), None, "t3")


def test_promoting_the_candidate_makes_it_production_and_ends_its_trial():
    current = nominate(pointer_with("v1"), entry("v2"), "v1", "t1")
    card = {"pairs": 10, "agreement": {"rate": 0.9}}
    promoted = promote_candidate(current, LATER, scorecard=card)
    assert promoted.version == "v2" and promoted.candidate is None
    assert promoted.current.action == "promote after trial" and promoted.current.promoted_at == LATER
    assert [e.version for e in promoted.history] == ["v2", "v1"]
    assert promoted.trials[0]["outcome"] == "promoted" and promoted.trials[0]["scorecard"] == card
    assert rollback(promoted, "t9").version == "v1"  # the rollback the history allows
    with pytest.raises(RegistryError):
        promote_candidate(promoted, LATER)  # nothing on trial any more
    with pytest.raises(RegistryError):
        promote_candidate(current, LATER, version="v9")  # not the candidate on trial


def test_a_candidate_gated_against_another_champion_is_not_promoted():
    current = nominate(pointer_with("v0", "v1"), entry("v2"), "v1", "t1")
    rolled = rollback(current, "t2")
    assert rolled.version == "v0" and rolled.candidate.version == "v2"  # the trial goes on
    with pytest.raises(ChampionChanged):
        promote_candidate(rolled, LATER)


def test_dropping_the_candidate_leaves_production_untouched():
    current = nominate(pointer_with("v1"), entry("v2"), "v1", "t1")
    dropped = drop_candidate(current, LATER, "disagrees on viral cases")
    assert dropped.version == "v1" and dropped.history == current.history and dropped.candidate is None
    assert (
        dropped.trials[0]["outcome"] == "dropped"
        and dropped.trials[0]["reason"] == "disagrees on viral cases"
    )


def test_a_task_retried_after_its_candidate_was_dropped_does_not_nominate_it_again():
    world = World()
    first = world.train("v1", 0.97)
    world.gate(first)
    promote_with_trial(world, first)
    second = world.train("v2", 0.98)
    world.gate(second)
    promote_with_trial(world, second)
    store: InMemoryPointerStore = world.registry
    store.update(DS, lambda current: drop_candidate(current, LATER, "no"))
    assert promote_with_trial(world, second)["stage"] == "trial_ended"
    assert world.registry.pointer(DS).candidate is None


def test_a_model_submitted_by_hand_is_gated_on_the_newest_split_and_becomes_the_candidate():
    from test_gate_and_promote_rules import MANIFEST, job

    from medimage.ops.trial import submit_model

    world = World()
    first = world.train("v1", 0.97)
    world.gate(first)
    world.promote(first)

    def submit(uri: str) -> dict:
        return submit_model(
            world.store, world.registry, world.artifacts, world.evaluator, DS, uri, MANIFEST, DS, now=NOW
        )

    # Trained on the newest manifest: judged on its own evaluation.json.
    uri, files = job("ignored", 0.98)
    world.artifacts.outputs[uri] = files
    result = submit(uri)
    version = result["version"]
    assert version.startswith(f"{MANIFEST}-m") and result["gate"]["passed"] and world.evaluator.calls == 0
    assert result["promotion"]["stage"] == "candidate"
    assert world.registry.pointer(DS).candidate.version == version
    assert world.store.get_json(f"models/{DS}/{version}/gate.json")["champion"]["version"] == "v1"
    assert submit(uri)["promotion"]["stage"] == "candidate"  # submitting it again changes nothing
    # Trained on a split of its own (`medimage train`): run over the newest test split first.
    local_uri, local_files = job("local-run", 0.99, manifest="local")
    world.artifacts.outputs[local_uri] = local_files
    world.evaluator.accuracy = 0.40
    refused = submit(local_uri)
    assert world.evaluator.calls == 1 and refused["gate"]["passed"] is False and refused["promotion"] is None
    assert world.registry.pointer(DS).candidate.version == version  # the candidate on trial stays


def test_a_model_submitted_for_a_dataset_without_production_is_promoted():
    from test_gate_and_promote_rules import MANIFEST, job

    from medimage.ops.trial import submit_model

    world = World()
    uri, files = job("ignored", 0.98)
    world.artifacts.outputs[uri] = files
    result = submit_model(
        world.store, world.registry, world.artifacts, world.evaluator, DS, uri, MANIFEST, DS, now=NOW
    )
    assert result["promotion"]["stage"] == "production"
    assert world.registry.pointer(DS).version == result["version"]
