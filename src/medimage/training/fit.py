"""The fit loop: configure TensorFlow, build the model, fit it under a validation monitor (early stopping,
best weights, a time budget), and fit the softmax temperature on the validation split."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medimage.core.preprocess import PreprocessSpec
from medimage.training import format_metrics
from medimage.training.contract import Log, TrainConfig
from medimage.training.data import LabeledChannels, balanced_class_weights
from medimage.training.schedule import (
    batch_norm_momentum,
    effective_batch_size,
    epochs_within_budget,
    weight_average_momentum,
)

BN_RECOMPUTE_IMAGES = 1024  # enough for per-channel means and variances; a few seconds an epoch on 2 cores


@dataclass(frozen=True)
class Fitted:
    """The model with its best weights restored, the per-epoch history and the time spent in fit."""

    model: Any
    history: dict[str, list[float]]
    training_seconds: float


@dataclass
class _Monitor:
    """Per-epoch validation metrics, early stopping on the calibrated validation loss with best-weight
    restore, and a time budget the epochs are planned to (``replan`` gets each shorter plan)."""

    x_val: np.ndarray
    y_val: np.ndarray
    epochs: int
    patience: int
    budget_s: float
    log: Log
    replan: Callable[[int], None] = lambda epochs: None
    history: dict[str, list[float]] = field(default_factory=dict)
    best_loss: float = float("inf")
    best_epoch: int = 0
    best_weights: list[np.ndarray] | None = None
    stop_reason: str = "epochs"
    started: float = 0.0
    fit_started: float = field(default_factory=time.monotonic)
    planned: int = 0

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
            # fitted on these predictions), as mixup, label smoothing and class weights swing the raw
            # confidence from epoch to epoch (docs/experiments.md).
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
        if model.stop_training:
            return
        elapsed = time.monotonic() - self.fit_started
        planned = epochs_within_budget(self.planned or self.epochs, epoch + 1, elapsed, self.budget_s)
        if planned < (self.planned or self.epochs):
            self.log(
                f"time budget: {planned} of {self.epochs} epochs fit in {self.budget_s:.0f}s at "
                f"{elapsed / (epoch + 1):.0f}s an epoch; the learning rate now decays by epoch {planned}"
            )
            self.replan(planned)
        self.planned = planned
        if epoch + 1 >= planned and planned < self.epochs:
            self.stop_reason = "time budget reached"
            model.stop_training = True


def configure_tensorflow(config: TrainConfig) -> Any:
    """TensorFlow with the requested threads and the run's seed; returns the ``tensorflow`` module."""
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


def build_model(
    config: TrainConfig, spec: PreprocessSpec, n_classes: int, bn_momentum: float, log: Log = print
) -> Any:
    """The configured network; a pretrained backbone logs one line saying which weights it starts from."""
    from medimage.training.model import compact_cnn, mobilenet_v2_classifier

    if config.backbone == "mobilenetv2":
        from medimage.training.pretrained import mobilenet_v2, pretrained_mobilenet_v2

        def backbone(input_tensor: Any) -> Any:
            if config.weights == "none":
                log("starting weights: none (MobileNetV2 from random initialisation)")
                return mobilenet_v2(spec.image_size, input_tensor)
            made, source = pretrained_mobilenet_v2(spec.image_size, input_tensor, config.pretrained_weights)
            log(f"starting weights: {source.describe()}")
            return made

        model, _ = mobilenet_v2_classifier(
            spec.image_size, spec.channels, n_classes, backbone, config.dropout
        )
        return model
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


def bn_recompute_callback(model: Any, x_train: np.ndarray, seed: int) -> Any:
    """Recomputes batch-norm statistics at each epoch's end (after any weight-average swap, before the
    monitor judges the epoch) with the weights then in the model, from a fixed, seeded sample of
    un-augmented training images: the images the model will see at inference (docs/experiments.md).
    """
    import keras

    from medimage.training.model import reestimate_batch_norm

    rng = np.random.default_rng(seed)
    sample = x_train[np.sort(rng.permutation(len(x_train))[:BN_RECOMPUTE_IMAGES])].astype(np.float32)

    class Recompute(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
            reestimate_batch_norm(model, sample)

    return Recompute()


def fit(config: TrainConfig, spec: PreprocessSpec, data: LabeledChannels, log: Log) -> Fitted:
    """Build the model and fit it on the train channel, judged each epoch on the validation channel."""
    tf = configure_tensorflow(config)
    import keras

    from medimage.training.augment import AugmentConfig, batch_augmenter
    from medimage.training.lr_schedule import WarmupThenCosine

    n_classes = len(data.labels)
    x_train, y_train = data.channels["train"].x, data.y["train"]
    batch_size = effective_batch_size(config.batch_size, len(x_train))
    steps = max(1, int(np.ceil(len(x_train) / batch_size)))
    bn_momentum = batch_norm_momentum(config.bn_momentum, steps)
    ema = weight_average_momentum(config.ema, steps, config.epochs)
    model = build_model(config, spec, n_classes, bn_momentum, log)
    log(
        f"model: {model.name}, {model.count_params()} parameters, weights={config.weights}, "
        f"batch {batch_size} x {steps} steps/epoch, batch-norm momentum {bn_momentum:.3f}, "
        f"weight average {f'momentum {ema:.4f}' if ema else 'off'}"
    )
    weights = (
        balanced_class_weights(y_train, n_classes)
        if config.class_weighting
        else dict.fromkeys(range(n_classes), 1.0)
    )
    sample_weights = np.array([weights[k] for k in y_train], dtype=np.float32)
    one_hot = np.eye(n_classes, dtype=np.float32)[y_train]
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
    # At most half the run: a short run (the demo, a test) keeps the preset's warm-up from eating it all.
    warmup_steps = min(round(steps * config.warmup_epochs), (steps * config.epochs) // 2)
    schedule = WarmupThenCosine(config.learning_rate, warmup_steps, steps * config.epochs)
    # With --ema every epoch is judged (and the best one kept) on the averaged weights: SwapEMAWeights puts
    # them in the model at each epoch's end, before the monitor runs, and takes them out at the next start.
    model.compile(
        optimizer=keras.optimizers.Adam(schedule, use_ema=ema > 0, ema_momentum=ema or 0.99),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
        metrics=["accuracy"],
    )
    monitor = _Monitor(
        data.channels["validation"].x.astype(np.float32),
        data.y["validation"],
        config.epochs,
        config.patience,
        60 * config.max_train_minutes,
        log,
        replan=lambda epochs: schedule.set_total_steps(steps * epochs),
    )
    fit_started = monitor.fit_started = time.monotonic()
    callbacks = [keras.callbacks.SwapEMAWeights(swap_on_epoch=True)] if ema > 0 else []
    if config.bn_recompute:
        callbacks.append(bn_recompute_callback(model, x_train, config.seed))
    model.fit(train_ds, epochs=config.epochs, verbose=0, callbacks=[*callbacks, monitor.callback()])
    training_seconds = time.monotonic() - fit_started
    if monitor.best_weights is not None:
        model.set_weights(monitor.best_weights)
    log(
        f"training stopped ({monitor.stop_reason}) after {len(monitor.history.get('loss', []))} epochs, "
        f"{training_seconds:.0f}s; best epoch {monitor.best_epoch} "
        f"(val_calibrated_loss={monitor.best_loss:.4f})"
    )
    return Fitted(model=model, history=monitor.history, training_seconds=training_seconds)


def calibrate(model: Any, x_val: np.ndarray, y_val: np.ndarray, log: Log) -> dict[str, Any]:
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
