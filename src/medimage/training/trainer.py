"""The training function behind ``training/train.py``: load the channels, fit, calibrate, package.

Each stage has its own module: the script-mode contract (`medimage.training.contract`, run by
`medimage.training.script_mode`), the per-run schedule (`medimage.training.schedule`), the fit loop
(`medimage.training.fit`) and the model directory (`medimage.training.package`).
"""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np

from medimage.core.preprocess import PreprocessSpec
from medimage.core.presets import get_preset
from medimage.training import format_metrics
from medimage.training.contract import CHANNELS, Log, Paths, TrainConfig


def train(config: TrainConfig, paths: Paths, log: Log = print) -> dict[str, Any]:
    """Train, export, check and evaluate; returns ``evaluation.json``'s content."""
    from medimage.training import data as channel_data

    started = time.monotonic()
    preset = get_preset(config.preset)
    spec = PreprocessSpec(image_size=config.image_size or preset.image_size, channels=preset.channels)
    if spec.image_size < 16:
        raise ValueError(f"--image-size must be at least 16, got {spec.image_size}")
    if preset.hyperparameters:
        given = ", ".join(f"{k}={v}" for k, v in preset.hyperparameters.items())
        log(f"preset {preset.name} trainer defaults: {given} (arguments override them)")

    # Read and check every channel before the (slow) TensorFlow import, so bad input fails fast.
    for name in CHANNELS:
        channel_data.check_channel(name, paths.channels[name])
    channels = {name: channel_data.load_channel(name, paths.channels[name], spec) for name in CHANNELS}
    labels = channel_data.class_list(preset.classes, list(channels.values()))
    y = {name: channel_data.indices(ch, labels) for name, ch in channels.items()}
    data = channel_data.LabeledChannels(channels=channels, labels=labels, y=y)
    counts = {name: np.bincount(y[name], minlength=len(labels)).tolist() for name in CHANNELS}
    log(
        f"data: preset={preset.name} classes={labels} image_size={spec.image_size} "
        f"images={ {n: len(c) for n, c in channels.items()} } per_class={counts} "
        f"({time.monotonic() - started:.1f}s to load)"
    )

    from medimage.training import fit, package, plots

    fitted = fit.fit(config, spec, data, log)
    x_val = channels["validation"].x.astype(np.float32)
    calibration = fit.calibrate(fitted.model, x_val, y["validation"], log) if config.calibrate else None
    trained = package.TrainedModel(
        model=fitted.model,
        config=config,
        preset=preset.name,
        dataset=config.dataset or preset.name,
        spec=spec,
        training_seconds=fitted.training_seconds,
        calibration=calibration,
    )
    evaluation = package.export_and_evaluate(trained, data, paths.model_dir, log)

    paths.output_dir.mkdir(parents=True, exist_ok=True)
    (paths.output_dir / "evaluation.json").write_text(json.dumps(evaluation, indent=2) + "\n")
    plots.training_curves(fitted.history, paths.output_dir / "training_curves.png")
    plots.confusion_matrices(evaluation, paths.output_dir / "confusion_matrix.png")
    plots.coverage_accuracy(evaluation, paths.output_dir / "coverage_accuracy.png")
    log(
        format_metrics(
            "final:",
            {
                "val_accuracy": evaluation["val"]["accuracy"],
                "val_macro_auc": evaluation["val"]["macro_auc"],
                "test_accuracy": evaluation["test"]["accuracy"],
                "test_macro_auc": evaluation["test"]["macro_auc"],
                "seconds": time.monotonic() - started,
            },
        )
    )
    return evaluation
