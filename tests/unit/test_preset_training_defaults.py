"""A preset's own trainer defaults: what suits its dataset, below the arguments a user gives."""

from __future__ import annotations

import dataclasses

import pytest

from medimage.core.presets import _parse, get_preset, preset_names
from medimage.training import contract
from medimage.training.contract import TrainConfig, parse
from medimage.training.schedule import weight_average_momentum

RAW = {
    "name": "demo",
    "classes": ["a", "b"],
    "label_rules": [{"folder": "A", "label": "a"}, {"folder": "B", "label": "b"}],
    "split": {"train": 0.8, "val": 0.1, "test": 0.1},
}


def with_hyperparameters(monkeypatch: pytest.MonkeyPatch, **values: object) -> None:
    """GIVEN the folders preset with these trainer defaults."""
    preset = dataclasses.replace(get_preset("folders"), hyperparameters=dict(values))
    monkeypatch.setattr(contract, "get_preset", lambda name: preset)


def test_preset_defaults_replace_the_trainers(monkeypatch: pytest.MonkeyPatch) -> None:
    with_hyperparameters(monkeypatch, **{"acquisition-augment": True, "mixup": 0.2, "aspect-jitter": "0.1"})
    config, _, _ = parse(["--preset", "folders"], {})
    assert (config.acquisition_augment, config.mixup, config.aspect_jitter) == (True, 0.2, 0.1)
    assert config.dropout == TrainConfig(preset="").dropout  # what the preset leaves alone is unchanged


def test_arguments_override_preset_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    with_hyperparameters(monkeypatch, **{"acquisition-augment": True, "mixup": 0.2})
    config, _, _ = parse(["--preset", "folders", "--mixup", "0", "--acquisition-augment", "false"], {})
    assert (config.acquisition_augment, config.mixup) == (False, 0.0)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("aspect-jitter", 0.7, "--aspect-jitter in [0, 0.5)"),
        ("ema", 1.5, "training hyperparameter 'ema': --ema must lie in [0, 1)"),
        ("augment", "maybe", "training hyperparameter 'augment': expected true or false"),
        ("weights", "resnet", "training hyperparameter 'weights': expected one of auto, none, imagenet"),
        ("epochs", 2.5, "training hyperparameter 'epochs': invalid literal"),
    ],
)
def test_preset_defaults_are_checked_like_arguments(
    monkeypatch: pytest.MonkeyPatch, name: str, value: object, message: str
) -> None:
    with_hyperparameters(monkeypatch, **{name: value})
    with pytest.raises(ValueError) as err:
        parse(["--preset", "folders"], {})
    assert message in str(err.value)


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
        assert getattr(config, option.replace("-", "_")) == value, option


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


@pytest.mark.parametrize(
    ("setting", "steps", "epochs", "expected"),
    [
        ("off", 133, 20, 0.0),
        (0.99, 133, 20, 0.99),
        ("auto", 133, 20, 1 - 1 / 266),  # a tenth of the run (2660 steps) is shorter than 2.5 epochs
        ("auto", 133, 40, 1 - 1 / 332.5),  # 2.5 epochs
        ("auto", 8, 2, 0.375),  # tiny runs: 1.6 steps, barely any averaging
        ("auto", 100_000, 20, 0.999),
    ],
)
def test_weight_average_momentum(setting: float | str, steps: int, epochs: int, expected: float) -> None:
    assert weight_average_momentum(setting, steps, epochs) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("text", "value"), [("auto", "auto"), ("OFF", "off"), ("0", "off"), ("0.995", 0.995)]
)
def test_ema_option_values(text: str, value: float | str) -> None:
    config, _, _ = parse(["--preset", "folders", "--ema", text], {})
    assert config.ema == value
