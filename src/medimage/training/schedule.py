"""How the requested batch size, batch-norm momentum and weight average become per-step values for one
run: they depend on the dataset's size, so they are settled here once the training channel is loaded."""

from __future__ import annotations

import argparse

import numpy as np


def effective_batch_size(requested: int, n_train: int) -> int:
    """Small datasets get smaller batches (at least 8 steps an epoch, batches of at least 8), so batch
    normalisation statistics settle within a few epochs; large datasets use the requested size."""
    return max(1, min(requested, max(8, n_train // 8)))


def batch_norm_momentum(requested: float, steps_per_epoch: int) -> float:
    """``requested``, or (0) moving statistics that average over about one epoch, within [0.9, 0.99].

    The moving statistics are what the exported model normalises with; averaged over only ~10 batches
    they follow whichever augmented batches came last (docs/experiments.md). Small datasets keep 0.9 so
    the statistics settle within a few epochs.
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


def ema_setting(text: str) -> float | str:
    """The ``--ema`` option's type: "auto", "off" (also 0) or a per-step momentum in (0, 1)."""
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


def epochs_within_budget(planned: int, done: int, elapsed_s: float, budget_s: float) -> int:
    """How many epochs the run can hold: ``planned``, or fewer when the epochs so far, at their mean time,
    say the rest would overrun the time budget; never fewer than ``done`` (then the run stops now).

    Why: a run cut short by its budget stops while the learning rate is still high, in the middle of the
    cosine decay; planned to the budget it decays fully, on a loaded machine or a larger dataset alike."""
    if done <= 0 or elapsed_s <= 0:
        return planned
    per_epoch = elapsed_s / done
    fits = done + int(max(0.0, budget_s - elapsed_s) // per_epoch)
    return max(done, min(planned, fits))
