"""The training-distribution check on the model's input array (pure numpy)."""

from __future__ import annotations

import numpy as np
import pytest

from medimage.core.input_profile import InputProfile, statistics


def xray_like(n: int, seed: int = 0) -> np.ndarray:
    """Mid-grey images with a bright band and noise: mean ~110-130, std ~40-50."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(90, 110, (n, 1, 1))
    band = np.zeros((32, 32))
    band[8:24] = 80
    return np.clip(base + band + rng.normal(0, 30, (n, 32, 32)), 0, 255)


def test_the_profile_band_holds_the_training_images_and_flags_unlike_ones():
    profile = InputProfile.fit(xray_like(500))
    assert profile.rate(xray_like(200, seed=1)) <= 0.02
    assert profile.outside(np.full((32, 32), 250.0)) == ["mean", "std"]  # a blank, over-exposed frame
    assert "std" in profile.outside(np.full((32, 32), 120.0))  # no structure at all
    assert profile.outside(xray_like(1, seed=2)[0]) == []


def test_the_band_is_the_quantiles_widened_by_the_margin():
    arrays = np.stack([np.full((4, 4), v) for v in np.linspace(0, 100, 101)])
    profile = InputProfile.fit(arrays, quantiles=(0.0, 1.0))
    assert profile.bands["mean"] == pytest.approx((-10.0, 110.0))
    assert profile.bands["std"] == pytest.approx((0.0, 0.0))


def test_the_profile_round_trips_through_model_json():
    profile = InputProfile.fit(xray_like(50))
    again = InputProfile.from_dict(profile.to_dict())
    assert again.bands == profile.bands and again.n == 50


def test_a_broken_profile_is_refused():
    with pytest.raises(ValueError, match="mean, std"):
        InputProfile.from_dict({"mean": [0, 1]})
    with pytest.raises(ValueError, match="empty"):
        InputProfile.from_dict({"mean": [5, 1], "std": [0, 1], "quantiles": [0.01, 0.99]})
    with pytest.raises(ValueError, match="at least one"):
        InputProfile.fit(np.zeros((0, 4, 4)))


def test_statistics_are_brightness_and_contrast():
    assert statistics(np.array([[0.0, 255.0]])) == {"mean": 127.5, "std": 127.5}
