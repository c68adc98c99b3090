"""The learning-rate schedule: Keras' warm-up and cosine decay, with an end the fit loop can bring forward
when the time budget cannot hold every planned epoch (`medimage.training.schedule.epochs_within_budget`)."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf


@keras.saving.register_keras_serializable(package="medimage")
class WarmupThenCosine(keras.optimizers.schedules.LearningRateSchedule):
    """Linear from 0 to ``peak`` over ``warmup_steps`` (none: from the peak), then a cosine down to
    ``alpha * peak`` at ``total_steps``, as `keras.optimizers.schedules.CosineDecay` with a warm-up does;
    `set_total_steps` moves the end."""

    def __init__(self, peak: float, warmup_steps: int, total_steps: int, alpha: float = 0.05) -> None:
        self.peak = float(peak)
        self.warmup_steps = int(warmup_steps)
        self.alpha = float(alpha)
        self.total_steps = tf.Variable(float(total_steps), trainable=False, dtype=tf.float32)

    def set_total_steps(self, steps: int) -> None:
        self.total_steps.assign(float(max(steps, self.warmup_steps + 1)))

    def __call__(self, step: Any) -> Any:
        step = tf.cast(step, tf.float32)
        peak, warmup = self.peak, float(self.warmup_steps)
        warm = peak * step / warmup if warmup else tf.constant(peak, tf.float32)
        progress = tf.clip_by_value((step - warmup) / tf.maximum(self.total_steps - warmup, 1.0), 0.0, 1.0)
        decayed = peak * (self.alpha + (1 - self.alpha) * 0.5 * (1 + tf.cos(np.pi * progress)))
        return tf.where(step < warmup, warm, decayed)

    def get_config(self) -> dict[str, Any]:
        return {
            "peak": self.peak,
            "warmup_steps": self.warmup_steps,
            "total_steps": int(self.total_steps.numpy()),
            "alpha": self.alpha,
        }
