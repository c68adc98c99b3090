"""The time budget: a run that cannot hold every planned epoch is planned to the budget, so its learning
rate still decays fully before it stops."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from medimage.training import fit as fit_module
from medimage.training.lr_schedule import WarmupThenCosine
from medimage.training.schedule import epochs_within_budget


def test_the_planned_epochs_stand_while_the_budget_holds_them():
    assert epochs_within_budget(11, 0, 0.0, 600.0) == 11
    assert epochs_within_budget(11, 2, 100.0, 600.0) == 11  # 50 s an epoch: 12 would fit


def test_fewer_epochs_are_planned_when_the_rest_would_overrun():
    # 100 s an epoch, 600 s budget: six epochs in all
    assert epochs_within_budget(11, 1, 100.0, 600.0) == 6
    assert epochs_within_budget(11, 3, 330.0, 600.0) == 5  # 110 s an epoch: 2 more fit in 270 s
    # past the budget, the run stops where it is
    assert epochs_within_budget(11, 4, 700.0, 600.0) == 4


def test_the_schedule_matches_keras_cosine_decay_and_ends_where_it_is_told():
    import keras

    keras_schedule = keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps=90, alpha=0.05, warmup_target=1e-3, warmup_steps=10
    )
    schedule = WarmupThenCosine(1e-3, 10, 100)
    for step in (0, 5, 10, 40, 99, 100, 150):
        assert float(schedule(step)) == pytest.approx(float(keras_schedule(step)), rel=1e-5), step
    # shortened to 50 steps, it reaches its floor (5 % of the peak) at step 50
    schedule.set_total_steps(50)
    assert float(schedule(50)) == pytest.approx(5e-5, rel=1e-4)
    assert float(schedule(30)) == pytest.approx(1e-3 * (0.05 + 0.95 * 0.5 * (1 + np.cos(np.pi * 0.5))))
    # its configuration carries the moved end (a compiled model is cloned through it)
    again = WarmupThenCosine.from_config(schedule.get_config())
    assert float(again(50)) == pytest.approx(float(schedule(50)))
    # without warm-up it starts at the peak
    assert float(WarmupThenCosine(2e-3, 0, 100)(0)) == pytest.approx(2e-3)


class _FakeModel:
    """What the monitor reads of a Keras model: predictions, the learning rate, weights, the stop flag."""

    def __init__(self, probs: np.ndarray) -> None:
        self.probs = probs
        self.stop_training = False
        self.optimizer = type("Optimizer", (), {"learning_rate": np.float32(1e-3)})()

    def predict(self, x: Any, batch_size: int, verbose: int) -> np.ndarray:
        return self.probs

    def get_weights(self) -> list[np.ndarray]:
        return [np.zeros(1)]


def test_the_monitor_replans_the_run_to_the_budget_and_stops_at_the_new_end(monkeypatch):
    # GIVEN a run of 10 planned epochs with 1,000 s of budget, whose epochs take 300 s each
    clock = {"now": 0.0}
    monkeypatch.setattr(fit_module.time, "monotonic", lambda: clock["now"])
    y = np.array([0, 1, 0, 1])
    model = _FakeModel(np.array([[0.8, 0.2], [0.3, 0.7], [0.6, 0.4], [0.4, 0.6]]))
    plans: list[int] = []
    lines: list[str] = []
    monitor = fit_module._Monitor(
        np.zeros((4, 1)), y, 10, 20, 1000.0, lines.append, replan=plans.append, fit_started=0.0
    )
    # WHEN the epochs end
    epochs_run = 0
    for epoch in range(10):
        clock["now"] += 300.0
        monitor.end_epoch(model, epoch, {"loss": 0.5, "accuracy": 0.5})
        epochs_run += 1
        if model.stop_training:
            break
    # THEN after the first epoch the run is planned to three epochs (900 s), the schedule told so once,
    # and it stops after the third, with the budget named as the reason
    assert plans == [3]
    assert epochs_run == 3 and monitor.stop_reason == "time budget reached"
    assert any("3 of 10 epochs" in line for line in lines)


def test_a_run_the_budget_holds_is_never_replanned(monkeypatch):
    clock = {"now": 0.0}
    monkeypatch.setattr(fit_module.time, "monotonic", lambda: clock["now"])
    model = _FakeModel(np.array([[0.8, 0.2], [0.3, 0.7]]))
    plans: list[int] = []
    monitor = fit_module._Monitor(
        np.zeros((2, 1)), np.array([0, 1]), 4, 20, 1000.0, print, replan=plans.append, fit_started=0.0
    )
    for epoch in range(4):
        clock["now"] += 100.0
        monitor.end_epoch(model, epoch, {})
    assert plans == [] and not model.stop_training and monitor.stop_reason == "epochs"
