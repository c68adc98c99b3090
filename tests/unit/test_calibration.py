"""Temperature scaling (pure numpy part): it finds the temperature that makes confidences honest and
never changes which class wins."""

from __future__ import annotations

import numpy as np
import pytest

from medimage.core.metrics import expected_calibration_error, log_loss
from medimage.training.calibration import fit_temperature, rescale


def _predictions(confidence: float, accuracy: float, n: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """Two-class predictions all at one confidence, right for the given share of images."""
    rng = np.random.default_rng(0)
    predicted = rng.integers(0, 2, n)
    truth = np.where(np.arange(n) < accuracy * n, predicted, 1 - predicted)
    probs = np.full((n, 2), 1.0 - confidence)
    probs[np.arange(n), predicted] = confidence
    return probs, truth


@pytest.mark.parametrize(("confidence", "direction"), [(0.99, "up"), (0.6, "down")])
def test_temperature_moves_confidence_to_the_accuracy(confidence: float, direction: str) -> None:
    # GIVEN a model that is right 80% of the time but says 99% (overconfident) or 60% (underconfident)
    probs, truth = _predictions(confidence, 0.8)
    # WHEN the temperature is fitted
    temperature = fit_temperature(probs, truth)
    calibrated = rescale(probs, temperature)
    # THEN T > 1 softens an overconfident model and T < 1 sharpens an underconfident one ...
    assert (temperature > 1.0) if direction == "up" else (temperature < 1.0)
    # ... the confidence lands on the accuracy, the log loss drops, and no label changes
    assert calibrated.max(axis=1) == pytest.approx(0.8, abs=0.01)
    assert expected_calibration_error(truth, calibrated) < 0.01 < expected_calibration_error(truth, probs)
    assert log_loss(truth, calibrated) < log_loss(truth, probs)
    np.testing.assert_array_equal(calibrated.argmax(axis=1), probs.argmax(axis=1))


def test_rescale_at_temperature_one_is_the_identity() -> None:
    probs = np.array([[0.7, 0.2, 0.1], [0.05, 0.05, 0.9]])
    np.testing.assert_allclose(rescale(probs, 1.0), probs, atol=1e-9)
