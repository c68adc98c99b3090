"""The SageMaker script-mode contract: what a training job hands the trainer, and what it gets back.

Contract (docs/CONTRACTS.md): hyperparameters arrive as ``--name value``; channels in
``SM_CHANNEL_TRAIN`` / ``SM_CHANNEL_VALIDATION`` / ``SM_CHANNEL_TEST``; the model directory is
``SM_MODEL_DIR`` and plots go to ``SM_OUTPUT_DATA_DIR``. Without those variables the SageMaker default
paths under ``/opt/ml`` are used, and each can also be given as an option (``--train-dir`` ...). The
``failure_dir`` is ``$SM_OUTPUT_DIR``, where a failure's one line becomes SageMaker's FailureReason.

A leaf the trainer's stages import; the entry point that runs the trainer is
``medimage.training.script_mode``.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medimage.core.errors import UnknownPreset
from medimage.core.presets import get_preset
from medimage.training.options import add_field_options

CHANNELS = ("train", "validation", "test")
SAGEMAKER_DEFAULTS = {
    "SM_CHANNEL_TRAIN": "/opt/ml/input/data/train",
    "SM_CHANNEL_VALIDATION": "/opt/ml/input/data/validation",
    "SM_CHANNEL_TEST": "/opt/ml/input/data/test",
    "SM_MODEL_DIR": "/opt/ml/model",
    "SM_OUTPUT_DATA_DIR": "/opt/ml/output/data",
}
Log = Callable[[str], None]


@dataclass(frozen=True)
class TrainConfig:
    """The trainer's hyperparameters; the measurements behind the defaults are in docs/experiments.md."""

    preset: str
    dataset: str = ""
    manifest_version: str = "local"
    epochs: int = 20
    image_size: int | None = None  # the preset's when not given
    batch_size: int = 32
    learning_rate: float = 2e-3
    seed: int = 42
    backbone: str = "cnn"
    weights: str = "auto"  # imagenet for a pretrained backbone, none for the CNN
    pretrained_weights: str = ""
    warmup_epochs: float = 0.0
    width: int = 16
    dropout: float = 0.3
    weight_decay: float = 1e-4
    label_smoothing: float = 0.05
    # As long as the cosine schedule: a stop before the learning rate has decayed cuts the epochs that matter.
    patience: int = 20
    max_train_minutes: float = 25.0
    augment: bool = True  # geometric: rotation, translation, zoom, contrast, brightness
    horizontal_flip: bool = False
    # Against the aspect-ratio shortcut (medimage.core.shortcuts): squeezed square, the shape tells the class.
    aspect_jitter: float = 0.25
    # Off by default, like mixup: on the binary task both cost accuracy; the 3-class preset turns both on.
    acquisition_augment: bool = False  # gamma, blur/sharpen, noise
    acquisition_probability: float = 0.5
    mixup: float = 0.0  # Beta(alpha, alpha); 0 turns it off
    standardize: bool = False  # per-image standardisation inside the model (see model.py)
    calibrate: bool = True  # temperature scaling fitted on the validation split
    novelty: bool = True  # the out-of-distribution score in the served graph (medimage.core.novelty)
    bn_momentum: float = 0.0  # 0: averaged over about one epoch (see schedule.batch_norm_momentum)
    ema: float | str = "off"  # moving average of the weights: "auto", "off" or a momentum per step
    bn_recompute: bool = False  # batch-norm statistics recomputed on clean images at each epoch's end
    # Balanced class weights: the binary model's normal recall rests on them; the 3-class preset turns them
    # off (bacterial-vs-viral accuracy gains more than viral recall loses; docs/experiments.md).
    class_weighting: bool = True
    threads: int = 0  # 0: TensorFlow decides
    int8_calibration_images: int = 200
    # Selective accuracy the review threshold must reach on validation (see core/selective.py); set
    # above the accuracy wanted in use, since unseen sites are harder than the validation split.
    review_target: float = 0.98


_PATH_OPTIONS = ("train_dir", "validation_dir", "test_dir", "sm_model_dir", "output_data_dir")


@dataclass(frozen=True)
class Paths:
    channels: dict[str, Path]
    model_dir: Path
    output_dir: Path
    failure_dir: Path | None = None  # SageMaker's /opt/ml/output: a 'failure' file becomes FailureReason


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="train.py",
        description="Train a medimage classifier (script mode).",
        epilog="A preset may set its own defaults (training.hyperparameters in its JSON); arguments win.",
        allow_abbrev=False,
    )
    # Every hyperparameter is a TrainConfig field; MEDIMAGE_TF_THREADS sets a host's thread default.
    add_field_options(p, TrainConfig, defaults={"threads": int(os.environ.get("MEDIMAGE_TF_THREADS", "0"))})
    p.add_argument("--train-dir", default=None, help="default: $SM_CHANNEL_TRAIN")
    p.add_argument("--validation-dir", default=None, help="default: $SM_CHANNEL_VALIDATION")
    p.add_argument("--test-dir", default=None, help="default: $SM_CHANNEL_TEST")
    # Not --model_dir: the SageMaker TensorFlow estimator passes that one itself, as an S3 URI.
    p.add_argument("--sm-model-dir", default=None, help="default: $SM_MODEL_DIR")
    p.add_argument("--output-data-dir", default=None, help="default: $SM_OUTPUT_DATA_DIR")
    return p


def preset_hyperparameter_defaults(parser: argparse.ArgumentParser, preset_name: str) -> dict[str, Any]:
    """The preset's own trainer defaults by parser destination; {} for an unknown preset (train() says so)."""
    try:
        preset = get_preset(preset_name)
    except UnknownPreset:
        return {}
    actions = {a.dest: a for a in parser._actions}
    defaults: dict[str, Any] = {}
    for name, value in preset.hyperparameters.items():
        dest = name.replace("-", "_")
        action = actions.get(dest)
        if action is None or not action.option_strings or dest in _PATH_OPTIONS:
            raise ValueError(f"preset {preset.name}: unknown training hyperparameter '{name}'")
        # Through the option's own type and checks, as a string, as SageMaker passes hyperparameters.
        text = str(value).lower() if isinstance(value, bool) else str(value)
        try:
            defaults[dest] = action.type(text) if callable(action.type) else text
            if action.choices is not None and defaults[dest] not in action.choices:
                raise ValueError(f"expected one of {', '.join(map(str, action.choices))}, got {text!r}")
        except (argparse.ArgumentTypeError, ValueError) as exc:
            raise ValueError(f"preset {preset.name}: training hyperparameter '{name}': {exc}") from None
    return defaults


def parse(argv: Sequence[str], env: dict[str, str]) -> tuple[TrainConfig, Paths, list[str]]:
    """Config, paths and the arguments ignored (extra hyperparameters such as --model_dir s3://...).

    Defaults come from TrainConfig, then from the preset's ``training.hyperparameters`` (what suits that
    dataset), then the arguments given."""
    parser = build_parser()
    args, unknown = parser.parse_known_args(list(argv))
    preset_defaults = preset_hyperparameter_defaults(parser, args.preset)
    if preset_defaults:
        parser.set_defaults(**preset_defaults)
        args, unknown = parser.parse_known_args(list(argv))
    values = vars(args)
    path_args = {k: values.pop(k) for k in _PATH_OPTIONS}

    def where(option: str | None, variable: str) -> Path:
        return Path(option or env.get(variable) or SAGEMAKER_DEFAULTS[variable])

    paths = Paths(
        channels={
            "train": where(path_args["train_dir"], "SM_CHANNEL_TRAIN"),
            "validation": where(path_args["validation_dir"], "SM_CHANNEL_VALIDATION"),
            "test": where(path_args["test_dir"], "SM_CHANNEL_TEST"),
        },
        model_dir=where(path_args["sm_model_dir"], "SM_MODEL_DIR"),
        output_dir=where(path_args["output_data_dir"], "SM_OUTPUT_DATA_DIR"),
        failure_dir=Path(env["SM_OUTPUT_DIR"]) if env.get("SM_OUTPUT_DIR") else None,
    )
    config = TrainConfig(**values)
    if config.epochs < 1 or config.batch_size < 1:
        raise ValueError("--epochs and --batch-size must be at least 1")
    if config.mixup < 0 or not 0 <= config.aspect_jitter < 0.5:
        raise ValueError("--mixup must be at least 0 and --aspect-jitter in [0, 0.5)")
    if not 0 <= config.bn_momentum < 1:
        raise ValueError("--bn-momentum must lie in [0, 1)")
    if not 0 <= config.acquisition_probability <= 1:
        raise ValueError("--acquisition-probability must lie in [0, 1]")
    if config.backbone == "cnn" and config.weights == "imagenet":
        raise ValueError("--weights imagenet needs a pretrained backbone: add --backbone mobilenetv2")
    if config.warmup_epochs < 0:
        raise ValueError("--warmup-epochs must be at least 0")
    if not 0 < config.review_target <= 1:
        raise ValueError("--review-target must lie in (0, 1]")
    return config, paths, unknown
