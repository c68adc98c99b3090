"""The trainer behind ``training/train.py``: SageMaker script-mode contract in, model directory out.

Contract (docs/CONTRACTS.md): hyperparameters arrive as ``--name value``; channels in
``SM_CHANNEL_TRAIN`` / ``SM_CHANNEL_VALIDATION`` / ``SM_CHANNEL_TEST``; the model directory is
``SM_MODEL_DIR`` and plots go to ``SM_OUTPUT_DATA_DIR``. Without those variables the SageMaker default
paths under ``/opt/ml`` are used, and each can also be given as an option (``--train-dir`` ...).
The test split is scored by the exported ``model.tflite`` through the serving classifier, so
``evaluation.json`` describes the model that will be served, not the Keras model it came from.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from medimage.core.errors import MedimageError, UnknownPreset
from medimage.core.preprocess import PreprocessSpec
from medimage.core.presets import get_preset
from medimage.training import format_metrics

CHANNELS = ("train", "validation", "test")
SPLIT_OF_CHANNEL = {"train": "train", "validation": "val", "test": "test"}
SAGEMAKER_DEFAULTS = {
    "SM_CHANNEL_TRAIN": "/opt/ml/input/data/train",
    "SM_CHANNEL_VALIDATION": "/opt/ml/input/data/validation",
    "SM_CHANNEL_TEST": "/opt/ml/input/data/test",
    "SM_MODEL_DIR": "/opt/ml/model",
    "SM_OUTPUT_DATA_DIR": "/opt/ml/output/data",
}
MODEL_FILE = "model.tflite"
INT8_MODEL_FILE = "model-int8.tflite"
Log = Callable[[str], None]


def batch_norm_momentum(requested: float, steps_per_epoch: int) -> float:
    """``requested``, or (0) moving statistics that average over about one epoch, within [0.9, 0.99].

    The moving statistics are what the exported model normalises with. Averaged over only ~10 batches
    (momentum 0.9), they follow whichever augmented batches came last: measured on chestxray2017 with
    the acquisition augmentation, validation accuracy still swung by 7 points between epochs 17 and 18
    at a learning rate of 2e-4. Small datasets keep 0.9 so the statistics settle within a few epochs.
    """
    if requested:
        return requested
    return float(np.clip(1.0 - 1.0 / max(1, steps_per_epoch), 0.9, 0.99))


def weight_average_momentum(requested: float | str, steps_per_epoch: int, epochs: int) -> float:
    """``requested``, 0 for "off", or ("auto") a moving average of the weights over about 2.5 epochs and
    at most a tenth of the run, so short runs (the demo, tests) still average recent weights only.

    The per-step momentum m averages over about 1 / (1 - m) steps.
    """
    if requested == "off":
        return 0.0
    if requested != "auto":
        return float(requested)
    window = min(2.5 * steps_per_epoch, 0.1 * steps_per_epoch * epochs)
    return float(np.clip(1.0 - 1.0 / max(window, 1.0), 0.0, 0.999))


def _ema_setting(text: str) -> float | str:
    value = text.strip().lower()
    if value in ("auto", "off"):
        return value
    try:
        momentum = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected auto, off or a momentum, got {text!r}") from None
    if not 0 <= momentum < 1:
        raise argparse.ArgumentTypeError(f"--ema must lie in [0, 1), got {text!r}")
    return "off" if momentum == 0 else momentum


def effective_batch_size(requested: int, n_train: int) -> int:
    """Small datasets get smaller batches (at least 8 steps an epoch, batches of at least 8), so batch
    normalisation statistics settle within a few epochs; large datasets use the requested size."""
    return max(1, min(requested, max(8, n_train // 8)))


def _bool(text: str) -> bool:
    """SageMaker passes every hyperparameter as a string ("True", "false", "1"...)."""
    value = str(text).strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off", ""}:
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got '{text}'")


@dataclass(frozen=True)
class TrainConfig:
    preset: str
    dataset: str = ""
    manifest_version: str = "local"
    epochs: int = 20
    image_size: int | None = None  # the preset's when not given
    batch_size: int = 32
    learning_rate: float = 2e-3
    seed: int = 42
    weights: str = "none"
    width: int = 16
    dropout: float = 0.3
    weight_decay: float = 1e-4
    label_smoothing: float = 0.05
    # As long as the default 20-epoch cosine schedule: the best weights are always restored, but training
    # is only cut short in longer runs. A stop before the learning rate has decayed cuts the epochs that
    # matter. Measured on chestxray2017 (3 classes): patience 6 stopped at epoch 13 (validation accuracy
    # 0.795, viral recall 0.30, against 0.817 and 0.68 for the full schedule); with the acquisition
    # augmentation the validation loss is noisy mid-schedule, and patience 10 stopped at epoch 16 on a
    # best epoch of 6 (accuracy 0.79, viral recall 0.41).
    patience: int = 20
    max_train_minutes: float = 25.0
    augment: bool = True  # geometric: rotation, translation, zoom, contrast, brightness
    horizontal_flip: bool = False
    # Against the aspect-ratio shortcut (medimage.core.shortcuts): ChestXRay2017's pneumonia X-rays are
    # wider than its normal ones, and squeezed to a square the distortion tells the class. Measured on
    # chestxray2017-binary: without it the model called 76% of the normal validation X-rays pneumonia
    # once 10% was cut off top and bottom; with 0.25, 36% (benchmarks/shift_bench.py, aspect_wide).
    aspect_jitter: float = 0.25
    # Off by default, with mixup: measured on chestxray2017-binary (benchmarks/train_bench.py), both on
    # gave validation accuracy 0.965 and 10/16 on the full-resolution X-rays; aspect jitter alone 0.985,
    # 16/16, and the better accuracy under acquisition shifts (mean 0.956 against 0.942). The 3-class
    # preset turns both on (chestxray2017.json): there they kept clean accuracy (0.803-0.822 in four
    # runs, against 0.799) and raised the mean under shifts (0.791-0.797, against 0.770).
    acquisition_augment: bool = False  # gamma, blur/sharpen, noise
    acquisition_probability: float = 0.5
    mixup: float = 0.0  # Beta(alpha, alpha); 0 turns it off
    standardize: bool = False  # per-image standardisation inside the model (see model.py)
    calibrate: bool = True  # temperature scaling fitted on the validation split
    bn_momentum: float = 0.0  # 0: averaged over about one epoch (see batch_norm_momentum)
    ema: float | str = "off"  # moving average of the weights: "auto", "off" or a momentum per step
    bn_recompute: bool = False  # batch-norm statistics recomputed on clean images at each epoch's end
    class_weighting: bool = True
    threads: int = 0  # 0: TensorFlow decides
    int8_calibration_images: int = 200


_PATH_OPTIONS = ("train_dir", "validation_dir", "test_dir", "sm_model_dir", "output_data_dir")


@dataclass(frozen=True)
class Paths:
    channels: dict[str, Path]
    model_dir: Path
    output_dir: Path
    failure_dir: Path | None = None  # SageMaker's /opt/ml/output: a 'failure' file becomes FailureReason


def build_parser() -> argparse.ArgumentParser:
    d = TrainConfig(preset="")
    p = argparse.ArgumentParser(
        prog="train.py",
        description="Train a medimage classifier (script mode).",
        epilog="A preset may set its own defaults (training.hyperparameters in its JSON); arguments win.",
        allow_abbrev=False,
    )
    p.add_argument("--preset", required=True, help="dataset preset (classes, image size)")
    p.add_argument("--dataset", default="", help="dataset name (default: the preset name)")
    p.add_argument("--manifest-version", default=d.manifest_version)
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--image-size", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--learning-rate", type=float, default=d.learning_rate)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--weights", choices=("none", "imagenet"), default=d.weights)
    p.add_argument("--width", type=int, default=d.width, help="filters of the first conv layer")
    p.add_argument("--dropout", type=float, default=d.dropout)
    p.add_argument("--weight-decay", type=float, default=d.weight_decay, help="L2 on conv kernels")
    p.add_argument("--label-smoothing", type=float, default=d.label_smoothing)
    p.add_argument("--patience", type=int, default=d.patience, help="epochs without val improvement")
    p.add_argument("--max-train-minutes", type=float, default=d.max_train_minutes)
    p.add_argument("--augment", type=_bool, default=d.augment)
    p.add_argument("--horizontal-flip", type=_bool, default=d.horizontal_flip)
    p.add_argument(
        "--aspect-jitter",
        type=float,
        default=d.aspect_jitter,
        help="independent x/y zoom (aspect-ratio change), as a fraction",
    )
    p.add_argument(
        "--acquisition-augment",
        type=_bool,
        default=d.acquisition_augment,
        help="per-image gamma, blur or sharpening, and noise",
    )
    p.add_argument(
        "--acquisition-probability",
        type=float,
        default=d.acquisition_probability,
        help="share of training images the acquisition augmentation changes",
    )
    p.add_argument("--mixup", type=float, default=d.mixup, help="mixup Beta alpha (0: off)")
    p.add_argument(
        "--standardize", type=_bool, default=d.standardize, help="per-image standardisation inside the model"
    )
    p.add_argument("--class-weighting", type=_bool, default=d.class_weighting)
    p.add_argument(
        "--bn-momentum",
        type=float,
        default=d.bn_momentum,
        help="batch-normalisation momentum (0: about one epoch, within 0.9..0.99)",
    )
    p.add_argument(
        "--ema",
        type=_ema_setting,
        default=d.ema,
        help="judge and keep a moving average of the weights: auto, off or a momentum per step",
    )
    p.add_argument(
        "--bn-recompute",
        type=_bool,
        default=d.bn_recompute,
        help="recompute batch-norm statistics with the current weights at each epoch's end",
    )
    p.add_argument(
        "--calibrate",
        type=_bool,
        default=d.calibrate,
        help="fit a softmax temperature on the validation split (labels unchanged)",
    )
    p.add_argument("--threads", type=int, default=int(os.environ.get("MEDIMAGE_TF_THREADS", "0")))
    p.add_argument("--int8-calibration-images", type=int, default=d.int8_calibration_images)
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
    return config, paths, unknown


@dataclass
class _Monitor:
    """Per-epoch validation metrics, early stopping on the calibrated validation loss with best-weight
    restore, and a time budget."""

    x_val: np.ndarray
    y_val: np.ndarray
    labels: list[str]
    epochs: int
    patience: int
    deadline: float
    log: Log
    history: dict[str, list[float]] = field(default_factory=dict)
    best_loss: float = float("inf")
    best_epoch: int = 0
    best_weights: list[np.ndarray] | None = None
    stop_reason: str = "epochs"
    started: float = 0.0

    def callback(self) -> Any:
        import keras

        monitor = self

        class Callback(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch: int, logs: dict[str, float] | None = None) -> None:
                monitor.started = time.monotonic()

            def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
                monitor.end_epoch(self.model, epoch, dict(logs or {}))

        return Callback()

    def end_epoch(self, model: Any, epoch: int, logs: dict[str, float]) -> None:
        from medimage.core.metrics import log_loss, macro_auc
        from medimage.training.calibration import fit_temperature, rescale

        probs = model.predict(self.x_val, batch_size=64, verbose=0).astype(np.float64)
        val = {
            "val_loss": log_loss(self.y_val, probs),
            # The selection criterion: the log loss once the confidence is calibrated (one temperature
            # fitted on these predictions). Mixup, label smoothing and class weights swing the raw
            # confidence from epoch to epoch; measured on chestxray2017 with mixup, the raw val_loss
            # picked epoch 6 of 20 and stopped training at epoch 16 while accuracy was still rising.
            "val_calibrated_loss": log_loss(self.y_val, rescale(probs, fit_temperature(probs, self.y_val))),
            "val_accuracy": float(np.mean(probs.argmax(1) == self.y_val)),
            "val_macro_auc": macro_auc(self.y_val, probs),
        }
        row = {
            "loss": logs.get("loss"),
            "accuracy": logs.get("accuracy"),
            **val,
            "learning_rate": float(np.asarray(model.optimizer.learning_rate)),
            "seconds": time.monotonic() - self.started,
        }
        for name, value in row.items():
            self.history.setdefault(name, []).append(float("nan") if value is None else float(value))
        self.log(format_metrics(f"epoch {epoch + 1}/{self.epochs}:", row))
        if val["val_calibrated_loss"] < self.best_loss - 1e-4:
            self.best_loss, self.best_epoch = val["val_calibrated_loss"], epoch + 1
            self.best_weights = model.get_weights()
        elif epoch + 1 - self.best_epoch >= self.patience:
            self.stop_reason = f"no validation improvement for {self.patience} epochs"
            model.stop_training = True
        if time.monotonic() > self.deadline and not model.stop_training:
            self.stop_reason = "time budget reached"
            model.stop_training = True


def _configure_tensorflow(config: TrainConfig) -> Any:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    if config.threads:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(config.threads)
            tf.config.threading.set_inter_op_parallelism_threads(min(config.threads, 2))
        except RuntimeError:  # TensorFlow already ran in this process (train() in-process): keep its threads
            pass
    keras.utils.set_random_seed(config.seed)
    return tf


def _build_model(config: TrainConfig, spec: PreprocessSpec, n_classes: int, bn_momentum: float) -> Any:
    from medimage.training.model import compact_cnn, imagenet_backbone

    if config.weights == "imagenet":
        return imagenet_backbone(spec.image_size, spec.channels, n_classes, config.dropout)
    return compact_cnn(
        spec.image_size,
        spec.channels,
        n_classes,
        config.width,
        config.dropout,
        config.weight_decay,
        config.standardize,
        bn_momentum,
    )


BN_RECOMPUTE_IMAGES = 1024  # enough for per-channel means and variances; a few seconds an epoch on 2 cores


def _bn_recompute_callback(model: Any, x_train: np.ndarray, seed: int) -> Any:
    """Recomputes batch-norm statistics at each epoch's end (after any weight-average swap, before the
    monitor judges the epoch) with the weights then in the model, from a fixed, seeded sample of
    un-augmented training images (the images the model will see at inference).

    Measured with the weight average on chestxray2017-binary: statistics from training-style augmented
    images were worse (validation accuracy 0.86 at epoch 11, against 0.94 with clean images).
    """
    import keras

    from medimage.training.model import reestimate_batch_norm

    rng = np.random.default_rng(seed)
    sample = x_train[np.sort(rng.permutation(len(x_train))[:BN_RECOMPUTE_IMAGES])].astype(np.float32)

    class Recompute(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
            reestimate_batch_norm(model, sample)

    return Recompute()


def train(config: TrainConfig, paths: Paths, log: Log = print) -> dict[str, Any]:
    """Train, export, check and evaluate; returns ``evaluation.json``'s content."""
    from medimage.training import data as channel_data

    started = time.monotonic()
    preset = get_preset(config.preset)
    dataset = config.dataset or preset.name
    spec = PreprocessSpec(image_size=config.image_size or preset.image_size, channels=preset.channels)
    if spec.image_size < 16:
        raise ValueError(f"--image-size must be at least 16, got {spec.image_size}")
    if preset.hyperparameters:
        given = ", ".join(f"{k}={v}" for k, v in preset.hyperparameters.items())
        log(f"preset {preset.name} trainer defaults: {given} (arguments override them)")

    # Read and check every channel before the (slow) TensorFlow import, so bad input fails fast.
    for name in CHANNELS:
        channel_data.read_channel_rows(name, paths.channels[name])
    channels = {name: channel_data.load_channel(name, paths.channels[name], spec) for name in CHANNELS}
    labels = channel_data.class_list(preset.classes, list(channels.values()))
    y = {name: channel_data.indices(ch, labels) for name, ch in channels.items()}
    counts = {name: np.bincount(y[name], minlength=len(labels)).tolist() for name in CHANNELS}
    log(
        f"data: preset={preset.name} classes={labels} image_size={spec.image_size} "
        f"images={ {n: len(c) for n, c in channels.items()} } per_class={counts} "
        f"({time.monotonic() - started:.1f}s to load)"
    )

    tf = _configure_tensorflow(config)
    import keras

    x_train = channels["train"].x
    batch_size = effective_batch_size(config.batch_size, len(x_train))
    steps = max(1, int(np.ceil(len(x_train) / batch_size)))
    bn_momentum = batch_norm_momentum(config.bn_momentum, steps)
    ema = weight_average_momentum(config.ema, steps, config.epochs)
    model = _build_model(config, spec, len(labels), bn_momentum)
    log(
        f"model: {model.name}, {model.count_params()} parameters, weights={config.weights}, "
        f"batch {batch_size} x {steps} steps/epoch, batch-norm momentum {bn_momentum:.3f}, "
        f"weight average {f'momentum {ema:.4f}' if ema else 'off'}"
    )
    weights = (
        channel_data.balanced_class_weights(y["train"], len(labels))
        if config.class_weighting
        else dict.fromkeys(range(len(labels)), 1.0)
    )
    sample_weights = np.array([weights[k] for k in y["train"]], dtype=np.float32)
    one_hot = np.eye(len(labels), dtype=np.float32)[y["train"]]
    from medimage.training.augment import AugmentConfig, batch_augmenter

    augment = AugmentConfig(
        geometric=config.augment,
        horizontal_flip=config.horizontal_flip,
        aspect_jitter=config.aspect_jitter,
        acquisition=config.acquisition_augment,
        acquisition_probability=config.acquisition_probability,
        mixup_alpha=config.mixup,
    )
    prepare = batch_augmenter(config.seed, spec.channels, augment)

    train_ds = (
        tf.data.Dataset.from_tensor_slices((x_train, one_hot, sample_weights))
        .shuffle(len(x_train), seed=config.seed, reshuffle_each_iteration=True)
        .batch(batch_size)
        # Sequential map: random augmentation drawn in parallel threads would differ from run to run.
        .map(prepare)
        .prefetch(tf.data.AUTOTUNE)
    )
    schedule = keras.optimizers.schedules.CosineDecay(
        config.learning_rate, decay_steps=steps * config.epochs, alpha=0.05
    )
    # With --ema every epoch is judged (and the best one kept) on the averaged weights: SwapEMAWeights puts
    # them in the model at each epoch's end, before the monitor runs, and takes them out at the next start.
    model.compile(
        optimizer=keras.optimizers.Adam(schedule, use_ema=ema > 0, ema_momentum=ema or 0.99),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
        metrics=["accuracy"],
    )
    x_val = channels["validation"].x.astype(np.float32)
    monitor = _Monitor(
        x_val,
        y["validation"],
        labels,
        config.epochs,
        config.patience,
        time.monotonic() + 60 * config.max_train_minutes,
        log,
    )
    fit_started = time.monotonic()
    callbacks = [keras.callbacks.SwapEMAWeights(swap_on_epoch=True)] if ema > 0 else []
    if config.bn_recompute:
        callbacks.append(_bn_recompute_callback(model, x_train, config.seed))
    model.fit(train_ds, epochs=config.epochs, verbose=0, callbacks=[*callbacks, monitor.callback()])
    training_seconds = time.monotonic() - fit_started
    if monitor.best_weights is not None:
        model.set_weights(monitor.best_weights)
    log(
        f"training stopped ({monitor.stop_reason}) after {len(monitor.history.get('loss', []))} epochs, "
        f"{training_seconds:.0f}s; best epoch {monitor.best_epoch} "
        f"(val_calibrated_loss={monitor.best_loss:.4f})"
    )

    calibration = _calibrate(model, x_val, y["validation"], log) if config.calibrate else None
    evaluation = _export_and_evaluate(
        model,
        config,
        preset.name,
        dataset,
        spec,
        labels,
        channels,
        y,
        paths,
        training_seconds,
        log,
        calibration,
    )
    from medimage.training import plots

    paths.output_dir.mkdir(parents=True, exist_ok=True)
    (paths.output_dir / "evaluation.json").write_text(json.dumps(evaluation, indent=2) + "\n")
    plots.training_curves(monitor.history, paths.output_dir / "training_curves.png")
    plots.confusion_matrices(evaluation, paths.output_dir / "confusion_matrix.png")
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


def _calibrate(model: Any, x_val: np.ndarray, y_val: np.ndarray, log: Log) -> dict[str, Any]:
    """Fit the temperature on the validation split and fold it into the model."""
    from medimage.core.metrics import expected_calibration_error, log_loss
    from medimage.training.calibration import fit_temperature, fold_into_model, rescale

    probs = model.predict(x_val, batch_size=64, verbose=0).astype(np.float64)
    temperature = fit_temperature(probs, y_val)
    fold_into_model(model, temperature)
    after = rescale(probs, temperature)
    result: dict[str, Any] = {
        "temperature": round(temperature, 4),
        "fitted_on": "validation",
        "val_log_loss_before": round(log_loss(y_val, probs), 4),
        "val_log_loss_after": round(log_loss(y_val, after), 4),
        "val_ece_before": round(expected_calibration_error(y_val, probs), 4),
        "val_ece_after": round(expected_calibration_error(y_val, after), 4),
    }
    log(format_metrics("calibration:", {k: v for k, v in result.items() if isinstance(v, float)}))
    return result


def _export_and_evaluate(
    model: Any,
    config: TrainConfig,
    preset: str,
    dataset: str,
    spec: PreprocessSpec,
    labels: list[str],
    channels: dict[str, Any],
    y: dict[str, np.ndarray],
    paths: Paths,
    training_seconds: float,
    log: Log,
    calibration: dict[str, Any] | None = None,
) -> dict[str, Any]:
    import tensorflow as tf

    from medimage.core.metrics import evaluate
    from medimage.training import export

    export.ensure_interpreter_available()
    from medimage.inference.model import TFLiteClassifier

    paths.model_dir.mkdir(parents=True, exist_ok=True)
    float_bytes = export.to_tflite_float(model)
    int8_bytes = export.to_tflite_int8(
        model, channels["train"].x, config.int8_calibration_images, config.seed
    )
    (paths.model_dir / MODEL_FILE).write_bytes(float_bytes)
    (paths.model_dir / INT8_MODEL_FILE).write_bytes(int8_bytes)
    (paths.model_dir / "labels.txt").write_text("\n".join(labels) + "\n", encoding="utf-8")

    # Keras on the trainer's arrays vs. each export on the files' bytes through the serving classifier:
    # one check catches a converter fault and any training/serving preprocessing difference at once.
    check_paths = channels["validation"].paths + channels["train"].paths[:64]
    check_x = np.concatenate([channels["validation"].x, channels["train"].x[:64]]).astype(np.float32)
    reference = model.predict(check_x, batch_size=64, verbose=0)
    checks = {}
    for name, content in (("float", float_bytes), ("int8", int8_bytes)):
        classifier = TFLiteClassifier(content, labels, spec, {})
        candidate = np.stack([_served_probabilities(classifier, p) for p in check_paths])
        if name == "float":
            checks[name] = export.check_agreement(reference, candidate)
        else:
            checks[name] = export.compare(reference, candidate)
        checks[name]["bytes"] = len(content)
    log(f"export: float {checks['float']}; int8 {checks['int8']}")

    meta = {
        "format_version": 1,
        "labels": labels,
        "preprocess": spec.to_dict(),
        "model_file": MODEL_FILE,
        "int8_model_file": INT8_MODEL_FILE,
        "preset": preset,
        "dataset": dataset,
        "manifest_version": config.manifest_version,
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "training_seconds": round(training_seconds, 1),
        "parameters": int(model.count_params()),
        "tensorflow_version": tf.__version__,
        "architecture": model.name,
        "hyperparameters": asdict(config),
        "export_checks": checks,
        "calibration": calibration,
    }
    (paths.model_dir / "model.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")

    # Score val and test exactly as the inference Lambda would: file bytes -> serving classifier.
    served = TFLiteClassifier.from_dir(paths.model_dir)
    evaluation = {}
    for channel, split in (("validation", "val"), ("test", "test")):
        probs = np.stack([_served_probabilities(served, p) for p in channels[channel].paths])
        evaluation[split] = evaluate(y[channel], probs, labels)
    text = json.dumps(evaluation, indent=2) + "\n"
    (paths.model_dir / "evaluation.json").write_text(text, encoding="utf-8")
    return evaluation


def _served_probabilities(classifier: Any, path: Path) -> np.ndarray:
    """Probabilities as the serving path computes them from the stored file's bytes."""
    prediction = classifier.predict_bytes(path.read_bytes())
    return np.array([prediction.probabilities[label] for label in classifier.labels], dtype=np.float64)


def _write_failure(paths: Paths | None, message: str) -> None:
    if paths is not None and paths.failure_dir is not None:
        try:
            paths.failure_dir.mkdir(parents=True, exist_ok=True)
            (paths.failure_dir / "failure").write_text(message + "\n", encoding="utf-8")
        except OSError:
            pass


def main(argv: Sequence[str] | None = None, env: dict[str, str] | None = None) -> int:
    """Entry point: a one-line error on stderr and a non-zero exit for any bad input, never a traceback."""
    argv = sys.argv[1:] if argv is None else argv
    env = dict(os.environ) if env is None else env
    paths: Paths | None = None
    try:
        config, paths, ignored = parse(argv, env)
        if ignored:
            print(f"ignoring hyperparameters this trainer does not use: {' '.join(ignored)}", flush=True)
        train(config, paths, log=lambda line: print(line, flush=True))
        return 0
    except (MedimageError, ValueError, OSError) as exc:
        message = f"train.py: error: {exc}"
        code = 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a bug or an environment problem: still one readable line, plus the traceback
        import traceback

        traceback.print_exc()
        message = f"train.py: error: unexpected {type(exc).__name__}: {exc}"
        code = 1
    print(message, file=sys.stderr, flush=True)
    _write_failure(paths, message)
    return code
