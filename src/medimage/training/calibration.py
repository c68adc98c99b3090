"""Temperature scaling: confidences that mean what they say, with the same predicted labels.

Label smoothing, mixup and class weighting all change how confident the network is, so its raw softmax
is not a probability a clinician can read. One temperature T, fitted on the validation split by
minimising the log loss, rescales the logits (softmax(z / T)); it never changes which class wins, so
accuracy is untouched (Guo et al., 2017). T is folded into the last Dense layer (z / T = (W / T) x + b / T),
so the exported model needs no extra op and serving needs nothing new.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from medimage.core.metrics import log_loss

MIN_TEMPERATURE, MAX_TEMPERATURE = 0.05, 20.0


def rescale(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log p / T): the probabilities a model with logits z / T gives (log p = z + constant)."""
    logits = np.log(np.clip(probabilities, 1e-12, 1.0)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    exp = np.exp(logits)
    return exp / exp.sum(axis=1, keepdims=True)


def fit_temperature(probabilities: np.ndarray, y_true: np.ndarray) -> float:
    """The T in [0.05, 20] that minimises the log loss (golden-section search on log T; it is unimodal)."""

    def loss(log_t: float) -> float:
        return log_loss(y_true, rescale(probabilities, float(np.exp(log_t))))

    low, high = np.log(MIN_TEMPERATURE), np.log(MAX_TEMPERATURE)
    ratio = (np.sqrt(5.0) - 1.0) / 2.0
    a, b = high - ratio * (high - low), low + ratio * (high - low)
    loss_a, loss_b = loss(a), loss(b)
    for _ in range(60):
        if loss_a < loss_b:
            high, b, loss_b = b, a, loss_a
            a = high - ratio * (high - low)
            loss_a = loss(a)
        else:
            low, a, loss_a = a, b, loss_b
            b = low + ratio * (high - low)
            loss_b = loss(b)
    return float(np.exp((low + high) / 2.0))


def fold_into_model(model: Any, temperature: float, layer_name: str = "probabilities") -> None:
    """Divide the final softmax Dense layer's kernel and bias by T, in place."""
    layer = model.get_layer(layer_name)
    layer.set_weights([w / temperature for w in layer.get_weights()])
