"""A preset's own trainer defaults: what suits its dataset, below the arguments a user gives."""

from __future__ import annotations

import dataclasses

import pytest

from medimage.core.presets import _parse, get_preset, preset_names
from medimage.training import trainer
from medimage.training.trainer import TrainConfig, parse

RAW = {
    "name": "demo",
    "classes": ["a", "b"],
    "label_rules": [{"folder": "A", "label": "a"}, {"folder": "B", "label": "b"}],
    "split": {"train": 0.8, "val": 0.1, "test": 0.1},
}


def with_hyperparameters(monkeypatch: pytest.MonkeyPatch, **values: object) -> None:
    """GIVEN the folders preset with these trainer defaults."""
    preset = dataclasses.replace(get_preset("folders"), hyperparameters=dict(values))
    monkeypatch.setattr(trainer, "get_preset", lambda name: preset)


def test_preset_defaults_replace_the_trainers(monkeypatch: pytest.MonkeyPatch) -> None:
    with_hyperparameters(monkeypatch, **{"acquisition-augment": True, "mixup": 0.2, "aspect-jitter": "0.1"})
    config, _, _ = parse(["--preset", "folders"], {})
    assert (config.acquisition_augment, config.mixup, config.aspect_jitter) == (True, 0.2, 0.1)
    assert config.dropout == TrainConfig(preset="").dropout  # what the preset leaves alone is unchanged


def test_arguments_override_preset_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    with_hyperparameters(monkeypatch, **{"acquisition-augment": True, "mixup": 0.2})
    config, _, _ = parse(["--preset", "folders", "--mixup", "0", "--acquisition-augment", "false"], {})
    assert (config.acquisition_augment, config.mixup) == (False, 0.0)


def test_preset_defaults_are_range_checked_like_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    with_hyperparameters(monkeypatch, **{"aspect-jitter": 0.7})
    with pytest.raises(ValueError, match="aspect-jitter"):
        parse(["--preset", "folders"], {})


@pytest.mark.parametrize("name", ["no-such-option", "train-dir", "sm-model-dir"])
def test_a_preset_naming_an_unknown_or_path_option_is_refused(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    with_hyperparameters(monkeypatch, **{name: 1})
    with pytest.raises(ValueError, match=f"unknown training hyperparameter '{name}'"):
        parse(["--preset", "folders"], {})


def test_unknown_preset_is_left_for_train_to_report() -> None:
    config, _, _ = parse(["--preset", "no-such-preset"], {})
    assert config.preset == "no-such-preset" and config.mixup == TrainConfig(preset="").mixup


@pytest.mark.parametrize("name", preset_names())
def test_every_shipped_presets_defaults_parse(name: str) -> None:
    config, _, _ = parse(["--preset", name], {})
    for option, value in get_preset(name).hyperparameters.items():
        assert getattr(config, option.replace("-", "_")) == value


@pytest.mark.parametrize(
    ("hyperparameters", "message"),
    [
        ({"image-size": 64}, "cannot set ['image-size']"),
        ({"preset": "x"}, "cannot set ['preset']"),
        ({"mixup": [0.2]}, "must map names to numbers, booleans or text"),
        ([1, 2], "must map names to numbers, booleans or text"),
    ],
)
def test_preset_file_with_bad_hyperparameters_is_refused(hyperparameters: object, message: str) -> None:
    with pytest.raises(ValueError) as err:
        _parse({**RAW, "training": {"hyperparameters": hyperparameters}})
    assert message in str(err.value)
