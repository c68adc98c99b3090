"""Command-line options derived from the fields of the trainer's config, so a new field gets its option.

``add_field_options`` declares ``--field-name`` for each field of a dataclass (``TrainConfig``): its parser
from the annotation (a ``bool`` through ``parse_bool``, since SageMaker passes every hyperparameter as a
string), its default from the field (a field without one is required), and its help, choices or parser
from ``TRAIN_OPTIONS`` where the annotation does not say enough. The script-mode parser
(``training/contract.py``) declares every hyperparameter this way, and ``medimage train`` the ones it
forwards.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

from medimage.training.schedule import ema_setting


@dataclass(frozen=True)
class OptionSpec:
    """What a field's annotation and default do not say about its option."""

    help: str | None = None
    type: Callable[[str], Any] | None = None
    choices: tuple[str, ...] | None = None


TRAIN_OPTIONS: dict[str, OptionSpec] = {
    "preset": OptionSpec("dataset preset (classes, image size)"),
    "dataset": OptionSpec("dataset name (default: the preset name)"),
    "epochs": OptionSpec("maximum epochs (early stopping may end sooner)"),
    "image_size": OptionSpec("input size in pixels (default: the preset's)"),
    "backbone": OptionSpec("the network: the compact CNN, or MobileNetV2", choices=("cnn", "mobilenetv2")),
    "weights": OptionSpec(
        "starting weights: imagenet for MobileNetV2 and none for the CNN (auto), or as given",
        choices=("auto", "none", "imagenet"),
    ),
    "pretrained_weights": OptionSpec(
        "ImageNet MobileNetV2 TFLite file or folder (default: the 'pretrained' channel, Keras' download, "
        "then $MEDIMAGE_PRETRAINED_DIR)"
    ),
    "warmup_epochs": OptionSpec("epochs of linear learning-rate warm-up before the cosine decay"),
    "width": OptionSpec("filters of the first conv layer"),
    "weight_decay": OptionSpec("L2 on conv kernels"),
    "patience": OptionSpec("epochs without val improvement"),
    "max_train_minutes": OptionSpec(
        "time budget of the fit: fewer epochs are planned, with the learning rate decaying by the last, "
        "when the first ones show the rest would not fit"
    ),
    "aspect_jitter": OptionSpec("independent x/y zoom (aspect-ratio change), as a fraction"),
    "acquisition_augment": OptionSpec("per-image gamma, blur or sharpening, and noise"),
    "acquisition_probability": OptionSpec("share of training images the acquisition augmentation changes"),
    "mixup": OptionSpec("mixup Beta alpha (0: off)"),
    "standardize": OptionSpec("per-image standardisation inside the model"),
    "bn_momentum": OptionSpec("batch-normalisation momentum (0: about one epoch, within 0.9..0.99)"),
    "ema": OptionSpec(
        "judge and keep a moving average of the weights: auto, off or a momentum per step", ema_setting
    ),
    "bn_recompute": OptionSpec(
        "recompute batch-norm statistics with the current weights at each epoch's end"
    ),
    "novelty": OptionSpec("score each image's distance from the training images in the served graph"),
    "calibrate": OptionSpec("fit a softmax temperature on the validation split (labels unchanged)"),
    "review_target": OptionSpec(
        "accuracy the confident predictions must reach on validation, clean and under the acquisition "
        "shifts pooled; the rest go to review"
    ),
}


def parse_bool(text: str) -> bool:
    """SageMaker passes every hyperparameter as a string ("True", "false", "1"...)."""
    value = str(text).strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off", ""}:
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got '{text}'")


def option_name(field_name: str) -> str:
    return "--" + field_name.replace("_", "-")


def add_field_options(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    config: type,
    specs: Mapping[str, OptionSpec] = TRAIN_OPTIONS,
    *,
    only: Collection[str] | None = None,
    defaults: Mapping[str, Any] | None = None,
) -> list[str]:
    """Declare ``--field-name`` for each field of the dataclass ``config`` (those in ``only``, in field
    order); ``defaults`` replaces a field's default. The fields declared, by name."""
    hints = typing.get_type_hints(config)
    declared: list[str] = []
    for field in dataclasses.fields(config):
        if only is not None and field.name not in only:
            continue
        spec = specs.get(field.name, OptionSpec())
        kwargs: dict[str, Any] = {"help": spec.help}
        kind = spec.type or _parser_for(config, field.name, hints[field.name])
        if kind is not None:
            kwargs["type"] = kind
        if spec.choices is not None:
            kwargs["choices"] = spec.choices
        if defaults is not None and field.name in defaults:
            kwargs["default"] = defaults[field.name]
        elif field.default is not dataclasses.MISSING:
            kwargs["default"] = field.default
        elif field.default_factory is not dataclasses.MISSING:
            kwargs["default"] = field.default_factory()
        else:
            kwargs["required"] = True
        parser.add_argument(option_name(field.name), **kwargs)
        declared.append(field.name)
    unknown = set(only or ()) - set(declared)
    if unknown:
        raise ValueError(f"{config.__name__} has no field {', '.join(sorted(unknown))}")
    return declared


def _parser_for(config: type, name: str, hint: Any) -> Callable[[str], Any] | None:
    """``int``, ``float``, ``parse_bool`` or None (a string) for ``X`` or ``X | None``."""
    kinds = [kind for kind in typing.get_args(hint) if kind is not type(None)] or [hint]
    if len(kinds) == 1 and kinds[0] is bool:
        return parse_bool
    if len(kinds) == 1 and kinds[0] in (int, float):
        return kinds[0]
    if len(kinds) == 1 and kinds[0] is str:
        return None
    raise TypeError(f"{config.__name__}.{name} ({hint}): give its option a parser in the OptionSpec")
