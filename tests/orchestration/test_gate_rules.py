"""The gate decision (pure core, no mocks)."""

from __future__ import annotations

import pytest

from medimage.core.gate import Champion, GateConfig, decide
from medimage.core.presets import get_preset
from medimage.core.test_metrics import TestMetrics

CONFIG = GateConfig(min_accuracy=0.9, min_recall={"normal": 0.6, "pneumonia": 0.9})


def metrics(
    accuracy: float,
    normal: float | None = 0.9,
    pneumonia: float | None = 0.95,
    version: str = "v1",
    n: int = 100,
) -> TestMetrics:
    recall = {"normal": normal, "pneumonia": pneumonia}
    return TestMetrics(version, accuracy, recall, ("normal", "pneumonia"), n)


def failed(decision) -> set[str]:
    return {c.name for c in decision.checks if not c.passed}


def test_a_first_model_above_every_threshold_passes_without_a_champion():
    decision = decide(metrics(0.93), CONFIG, None)
    assert decision.passed and decision.reasons == []
    assert decision.to_dict()["champion"] is None


def test_accuracy_below_the_threshold_fails_with_the_numbers_in_the_reason():
    decision = decide(metrics(0.75), CONFIG, None)
    assert not decision.passed and failed(decision) == {"min_accuracy"}
    assert decision.outcome == "fail"
    assert decision.reasons == [
        "test accuracy 0.7500 < min_accuracy 0.9000, as is all of its 95% interval 0.6570-0.8245 "
        "on 100 images"
    ]


def test_a_recall_floor_fails_even_when_accuracy_is_high():
    decision = decide(metrics(0.95, pneumonia=0.85), CONFIG, None)
    assert failed(decision) == {"min_recall:pneumonia"}


def test_an_untested_class_cannot_pass_its_floor():
    decision = decide(metrics(0.95, pneumonia=None), CONFIG, None)
    assert failed(decision) == {"min_recall:pneumonia"}
    assert "cannot be verified" in decision.reasons[0]


def test_a_challenger_worse_than_the_champion_fails_and_a_tie_passes():
    champion = Champion("old", metrics(0.94))
    assert failed(decide(metrics(0.93), CONFIG, champion)) == {"champion"}
    assert decide(metrics(0.94), CONFIG, champion).passed
    assert decide(metrics(0.96), CONFIG, champion).passed


def test_the_champion_must_be_measured_on_the_same_test_manifest():
    with pytest.raises(ValueError, match="same one"):
        decide(metrics(0.95), CONFIG, Champion("old", metrics(0.9, version="v0")))


def test_a_champion_with_other_classes_is_reported_not_held_against_the_challenger():
    other = TestMetrics("v1", 0.99, {"a": 1.0}, ("a",), 100)
    decision = decide(metrics(0.93), CONFIG, Champion("old", other))
    assert decision.passed and "not comparable" in decision.checks[-1].detail


def test_thresholds_come_from_the_preset_and_min_accuracy_can_be_overridden():
    preset = get_preset("chestxray2017-binary")
    assert GateConfig.from_preset(preset).min_accuracy == preset.gate.min_accuracy
    config = GateConfig.from_preset(preset, 0.5)
    assert config.min_accuracy == 0.5 and config.min_recall == preset.gate.min_recall
    with pytest.raises(ValueError):
        GateConfig.from_preset(preset, 1.5)


def test_metrics_are_read_from_an_evaluation_split_and_round_trip():
    split = {
        "n": 10,
        "accuracy": 0.9,
        "labels": ["normal", "pneumonia"],
        "per_class": {"normal": {"recall": 0.8}, "pneumonia": {"recall": None}},
    }
    parsed = TestMetrics.from_evaluation(split, "v1")
    assert parsed.recall == {"normal": 0.8, "pneumonia": None}
    assert TestMetrics.from_dict(parsed.to_dict()) == parsed


def test_a_coverage_floor_fails_a_model_that_sends_too_much_to_review():
    config = GateConfig(min_accuracy=0.9, min_recall={}, min_coverage=0.8)
    unsure = TestMetrics("v1", 0.95, {"normal": 0.9, "pneumonia": 0.95}, ("normal", "pneumonia"), 100, 0.7)
    sure = TestMetrics("v1", 0.95, {"normal": 0.9, "pneumonia": 0.95}, ("normal", "pneumonia"), 100, 0.85)
    decision = decide(unsure, config, None)
    assert failed(decision) == {"min_coverage"}
    assert decision.reasons == [
        "share labelled without review 0.7000 < min_coverage 0.8000, as is all of its 95% interval "
        "0.6042-0.7811 on 100 images"
    ]
    assert decide(sure, config, None).passed
    assert decision.to_dict()["thresholds"]["min_coverage"] == 0.8


def test_a_coverage_floor_cannot_be_met_by_a_model_without_a_review_threshold():
    config = GateConfig(min_accuracy=0.9, min_recall={}, min_coverage=0.5)
    decision = decide(metrics(0.95), config, None)
    assert failed(decision) == {"min_coverage"} and "no review threshold" in decision.reasons[0]


def test_without_a_coverage_floor_no_coverage_check_is_made():
    assert "min_coverage" not in {c.name for c in decide(metrics(0.95), CONFIG, None).checks}


def test_coverage_is_read_from_the_selective_figures_and_round_trips():
    split = {
        "n": 10,
        "accuracy": 0.9,
        "labels": ["normal", "pneumonia"],
        "per_class": {"normal": {"recall": 0.8}, "pneumonia": {"recall": 1.0}},
        "selective": {"threshold": 0.9, "coverage": 0.6, "accuracy_above": 1.0, "kept": 6, "n": 10},
    }
    parsed = TestMetrics.from_evaluation(split, "v1")
    assert parsed.coverage == 0.6
    assert TestMetrics.from_dict(parsed.to_dict()) == parsed


def test_a_preset_coverage_floor_outside_zero_to_one_is_refused():
    from medimage.core.presets import _parse as parse_preset

    raw = {
        "name": "x",
        "classes": ["a", "b"],
        "split": {"train": 0.8, "val": 0.1, "test": 0.1},
        "gate": {"min_accuracy": 0.5, "min_coverage": 1.5},
    }
    with pytest.raises(ValueError, match="min_coverage"):
        parse_preset(raw)
