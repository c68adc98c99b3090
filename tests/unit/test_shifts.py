"""Acquisition shifts (pure PIL/numpy): each one really changes the image, keeps it decodable, and the
robustness report tells a brightness-reliant classifier from one that looks at structure."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import pytest
from PIL import Image

from medimage.evaluation.shifts import SHIFT_NAMES, SHIFTS, Shift, get_shifts, robustness, shifted_bytes


def _png(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8), mode="L").save(out, format="PNG")
    return out.getvalue()


def _xray_like(seed: int, width: int = 90, height: int = 70) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    lungs = 140 + 60 * np.sin(xx / 9.0) * np.cos(yy / 7.0)
    return np.clip(lungs + rng.normal(0, 5, (height, width)), 0, 255)


@pytest.mark.parametrize("shift", SHIFTS, ids=SHIFT_NAMES)
def test_every_shift_changes_the_image_and_keeps_it_decodable(shift: Shift) -> None:
    original = _png(_xray_like(0))
    changed = shifted_bytes(original, shift)
    image = Image.open(io.BytesIO(changed))
    image.load()
    assert image.format == ("JPEG" if shift.encode_as_jpeg else "PNG")
    before = np.asarray(Image.open(io.BytesIO(original)), dtype=np.float32)
    after = np.asarray(image, dtype=np.float32)
    assert after.shape != before.shape or np.abs(after - before).mean() > 0.5


def test_shifts_keep_rgb_files_rgb() -> None:
    rgb = np.repeat(_xray_like(1)[:, :, None], 3, axis=2).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(rgb, mode="RGB").save(out, format="JPEG")
    for shift in get_shifts(["gamma_0.67", "noise", "pad_12"]):
        assert Image.open(io.BytesIO(shifted_bytes(out.getvalue(), shift))).mode == "RGB"


def test_unknown_shift_names_are_listed() -> None:
    with pytest.raises(ValueError, match=r"unknown shift\(s\) \['fog'\]"):
        get_shifts(["blur", "fog"])


@dataclass
class _Prediction:
    probabilities: dict[str, float]


class _BrightnessClassifier:
    """A fake that calls an image 'bright' by its mean grey level: the shortcut shifts should expose."""

    def __init__(self) -> None:
        self.labels = ["dark", "bright"]

    def predict_bytes(self, data: bytes) -> _Prediction:
        mean = float(np.asarray(Image.open(io.BytesIO(data)).convert("L"), dtype=np.float32).mean())
        p = 1.0 / (1.0 + np.exp(-(mean - 128.0) / 4.0))
        return _Prediction({"dark": 1.0 - p, "bright": p})


def test_report_exposes_a_classifier_that_relies_on_exposure() -> None:
    # GIVEN images whose class is told apart by brightness alone, just either side of the threshold
    files = [_png(np.full((40, 40), 110.0)), _png(np.full((40, 40), 150.0))] * 3
    truth = [0, 1] * 3
    # WHEN the robustness report is made with a gamma shift and a geometric one
    report = robustness(_BrightnessClassifier(), files, truth, get_shifts(["gamma_0.67", "crop_85"]))
    # THEN it is perfect on clean and cropped images, and the brightening shift is the worst
    assert report["n"] == 6
    assert report["clean"]["accuracy"] == 1.0
    assert report["shifts"]["crop_85"]["accuracy"] == 1.0
    assert report["shifts"]["gamma_0.67"]["accuracy"] == 0.5
    assert report["worst_shift"] == {"name": "gamma_0.67", "accuracy": 0.5}
    assert report["shifted_mean_accuracy"] == pytest.approx(0.75)


def test_an_array_is_shifted_at_its_own_size_and_channels():
    from medimage.evaluation.shifts import get_shifts, shifted_array

    rng = np.random.default_rng(0)
    gray = rng.uniform(0, 255, (40, 30, 1)).astype(np.float32)
    for shift in get_shifts(["crop_85", "pad_12", "jpeg_q15", "gamma_1.5"]):
        out = shifted_array(gray, shift)
        assert out.shape == gray.shape and out.dtype == np.float32, shift.name
        assert out.min() >= 0 and out.max() <= 255
    darker = shifted_array(gray, get_shifts(["gamma_1.5"])[0])
    assert darker.mean() < gray.mean()
    bordered = shifted_array(gray, get_shifts(["pad_12"])[0])
    assert bordered[0].max() == 0 and bordered[:, 0].max() == 0  # the black border, resized back in
    rgb = rng.uniform(0, 255, (20, 20, 3)).astype(np.float32)
    assert shifted_array(rgb, get_shifts(["blur"])[0]).shape == rgb.shape
