"""The int8 variant is served only at parity with float: the decision rule on fake classifiers."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from medimage.evaluation.scoring import probabilities
from medimage.evaluation.shifts import shifted_probabilities
from medimage.training.package import INT8_PARITY, int8_parity


@dataclass
class Prediction:
    probabilities: dict[str, float]


class BrightnessClassifier:
    """'bright' when the mean pixel exceeds a threshold; ``flip_every`` flips every n-th answer (lossy)."""

    def __init__(self, flip_every: int = 0) -> None:
        self.labels = ["bright", "dark"]
        self.flip_every, self.calls = flip_every, 0

    def predict_bytes(self, data: bytes) -> Prediction:
        self.calls += 1
        bright = float(np.asarray(Image.open(io.BytesIO(data)).convert("L")).mean()) > 128
        if self.flip_every and self.calls % self.flip_every == 0:
            bright = not bright
        p = 0.9 if bright else 0.1
        return Prediction({"bright": p, "dark": 1 - p})


def images(tmp_path: Path, n: int = 20) -> tuple[list[Path], list[int]]:
    paths, truth = [], []
    for i in range(n):
        value = 40 if i % 2 else 220
        path = tmp_path / f"{i}.png"
        Image.fromarray(np.full((32, 32), value, np.uint8)).save(path)
        paths.append(path)
        truth.append(i % 2)  # 0 = bright, 1 = dark
    return paths, truth


def outputs(classifier: BrightnessClassifier, paths: list[Path]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    files = [path.read_bytes() for path in paths]
    return probabilities(classifier, files), shifted_probabilities(classifier, files)


def test_an_int8_model_as_good_as_float_is_served(tmp_path):
    paths, truth = images(tmp_path)
    variants = {"float": BrightnessClassifier(), "int8": BrightnessClassifier()}
    decision = int8_parity({n: outputs(c, paths) for n, c in variants.items()}, truth, ["bright", "dark"])
    assert decision["served"] == "int8" and decision["at_parity"] is True
    assert decision["float"]["accuracy"] == decision["int8"]["accuracy"] == 1.0
    assert decision["tolerance"] == INT8_PARITY and decision["n"] == 20


def test_an_int8_model_that_loses_accuracy_leaves_float_served(tmp_path):
    paths, truth = images(tmp_path)
    lossy = BrightnessClassifier(flip_every=10)
    variants = {"float": BrightnessClassifier(), "int8": lossy}
    decision = int8_parity({n: outputs(c, paths) for n, c in variants.items()}, truth, ["bright", "dark"])
    assert decision["served"] == "float" and decision["at_parity"] is False
    assert decision["loss"]["accuracy"] > INT8_PARITY["accuracy"]
