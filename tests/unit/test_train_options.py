"""Options derived from TrainConfig's fields: every field is an option of the script-mode parser
(training/contract.py), read as SageMaker passes it, and `medimage train` forwards its own."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from medimage.cli import train_cmd
from medimage.cli.main import build_parser
from medimage.training import contract
from medimage.training.contract import TrainConfig
from medimage.training.options import TRAIN_OPTIONS, add_field_options, option_name, parse_bool

FIELDS = [field.name for field in dataclasses.fields(TrainConfig)]


def actions(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {action.dest: action for action in parser._actions if action.option_strings}


def test_every_train_config_field_is_an_option_of_train_py() -> None:
    declared = actions(contract.build_parser())
    assert [name for name in FIELDS if name not in declared] == []
    assert all(option_name(name) in declared[name].option_strings for name in FIELDS)


def test_train_py_reads_hyperparameters_as_sagemaker_passes_them(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every value arrives as a string; booleans in any case, ``ema`` as a word or a number."""
    monkeypatch.setenv("MEDIMAGE_TF_THREADS", "3")
    parser = contract.build_parser()
    given = [
        "--preset",
        "p",
        "--augment",
        "False",
        "--calibrate",
        "TRUE",
        "--ema",
        "0.99",
        "--image-size",
        "96",
    ]
    args = parser.parse_args(given)
    assert (args.augment, args.calibrate, args.ema, args.image_size) == (False, True, 0.99, 96)
    assert args.threads == 3  # the host's default
    defaults = TrainConfig(preset="p")
    assert (args.epochs, args.learning_rate, args.weights, args.backbone) == (
        defaults.epochs,
        defaults.learning_rate,
        "auto",
        "cnn",
    )
    for bad in (["--preset", "p", "--weights", "random"], ["--preset", "p", "--augment", "maybe"], []):
        with pytest.raises(SystemExit):
            parser.parse_args(bad)
    texts = ("true", "False", "1", "0", "yes", "off", "")
    assert [parse_bool(text) for text in texts] == [True, False, True, False, True, False, False]


def test_a_new_field_gets_an_option_from_its_annotation() -> None:
    @dataclasses.dataclass(frozen=True)
    class Config:
        name: str
        rounds: int = 3
        rate: float | None = None
        fast: bool = False

    parser = argparse.ArgumentParser()
    add_field_options(parser, Config, {})
    args = parser.parse_args(["--name", "x", "--rate", "0.5", "--fast", "true"])
    assert vars(args) == {"name": "x", "rounds": 3, "rate": 0.5, "fast": True}
    with pytest.raises(SystemExit):
        parser.parse_args([])  # a field without a default is required

    @dataclasses.dataclass(frozen=True)
    class Ambiguous:
        either: float | str = "auto"

    with pytest.raises(TypeError, match="either"):
        add_field_options(argparse.ArgumentParser(), Ambiguous, {})


def test_medimage_train_forwards_its_config_options_to_train_py() -> None:
    parser = build_parser()
    args = parser.parse_args(["train", "--data", "d", "--preset", "p", "--out", "o", "--image-size", "64"])
    assert (args.epochs, args.image_size) == (None, 64)  # unset: train.py's or the preset's default
    assert train_cmd.config_overrides(args) == {"image-size": "64"}
    args = parser.parse_args(["train", "--on", "sagemaker", "--dataset", "ds", "--epochs", "3"])
    assert train_cmd.config_overrides(args) == {"epochs": "3"}
    assert all(name in TRAIN_OPTIONS and TRAIN_OPTIONS[name].help for name in train_cmd.CONFIG_OPTIONS)
