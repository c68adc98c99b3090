"""Options derived from TrainConfig's fields: every field has one, with the type, default and help the
script-mode parser (training/contract.py) declares by hand, and `medimage train` forwards its own."""

from __future__ import annotations

import argparse
import dataclasses
import os

import pytest

from medimage.cli import train_cmd
from medimage.cli.main import build_parser
from medimage.training import contract
from medimage.training.contract import TrainConfig
from medimage.training.options import TRAIN_OPTIONS, add_field_options, option_name, parse_bool

FIELDS = [field.name for field in dataclasses.fields(TrainConfig)]


def actions(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {action.dest: action for action in parser._actions if action.option_strings}


def derived() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    threads = int(os.environ.get("MEDIMAGE_TF_THREADS", "0"))
    assert add_field_options(parser, TrainConfig, defaults={"threads": threads}) == FIELDS
    return parser


def test_every_train_config_field_is_an_option_of_train_py() -> None:
    declared = actions(contract.build_parser())
    assert [name for name in FIELDS if name not in declared] == []
    assert all(option_name(name) in declared[name].option_strings for name in FIELDS)


def test_derived_options_match_the_script_mode_parser() -> None:
    by_hand, ours = actions(contract.build_parser()), actions(derived())
    for name in FIELDS:
        want, got = by_hand[name], ours[name]
        assert got.option_strings == want.option_strings, name
        assert (got.default, got.required, got.choices) == (want.default, want.required, want.choices), name
        if want.help is not None:
            assert got.help == want.help, name
        if want.type is contract._bool:  # the same rule, under another name
            assert got.type is parse_bool
            for text in ("true", "False", "1", "0", "yes", "off", ""):
                assert parse_bool(text) == contract._bool(text)
        else:
            assert got.type is want.type, name


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
