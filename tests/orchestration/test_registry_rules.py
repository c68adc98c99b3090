"""Production pointer rules (pure core, no mocks)."""

from __future__ import annotations

import pytest

from medimage.core.registry import (
    ChampionChanged,
    ModelEntry,
    ProductionPointer,
    RegistryError,
    promote,
    rollback,
    sha256_hex,
)


def entry(version: str) -> ModelEntry:
    return ModelEntry(
        version,
        f"models/ds/{version}/model.tflite",
        sha256_hex(version.encode()),
        f"2026-01-0{version[-1]}T00:00:00+00:00",
        {"accuracy": 0.9},
    )


def promoted(*versions: str) -> ProductionPointer:
    pointer = None
    for v in versions:
        pointer = promote(pointer, "ds", entry(v), None if pointer is None else pointer.version)
    assert pointer is not None
    return pointer


def test_promotions_build_the_history_newest_first_with_the_current_one_included():
    pointer = promoted("v1", "v2", "v3")
    data = pointer.to_dict()
    assert data["version"] == "v3" and data["model_key"] == "models/ds/v3/model.tflite"
    assert data["model_sha256"] == sha256_hex(b"v3")
    assert [h["version"] for h in data["history"]] == ["v3", "v2", "v1"]
    assert ProductionPointer.from_dict(data) == pointer


def test_promoting_the_current_version_again_changes_nothing():
    pointer = promoted("v1")
    assert promote(pointer, "ds", entry("v1"), None) is pointer


def test_a_promotion_gated_against_a_stale_champion_is_refused():
    with pytest.raises(ChampionChanged):
        promote(promoted("v1", "v2"), "ds", entry("v3"), "v1")
    with pytest.raises(ChampionChanged):
        promote(promoted("v1"), "ds", entry("v2"), None)


def test_rollback_goes_one_version_back_each_time_and_records_what_was_withdrawn():
    once = rollback(promoted("v1", "v2", "v3"), "2026-02-01T00:00:00+00:00")
    assert once.version == "v2" and [e.version for e in once.history] == ["v2", "v1"]
    assert once.current.promoted_at == "2026-02-01T00:00:00+00:00" and "v3" in once.current.action
    assert [w["version"] for w in once.rolled_back] == ["v3"]
    twice = rollback(once, "2026-02-02T00:00:00+00:00")
    assert twice.version == "v1" and [w["version"] for w in twice.rolled_back] == ["v2", "v3"]
    with pytest.raises(RegistryError, match="nothing to roll back"):
        rollback(twice, "later")


def test_rollback_to_a_named_version():
    pointer = rollback(promoted("v1", "v2", "v3"), "now", to="v1")
    assert pointer.version == "v1" and [w["version"] for w in pointer.rolled_back] == ["v3", "v2"]
    with pytest.raises(RegistryError, match="not in the history"):
        rollback(pointer, "now", to="v9")
    with pytest.raises(RegistryError, match="already"):
        rollback(pointer, "now", to="v1")
    with pytest.raises(RegistryError):
        rollback(None, "now")
