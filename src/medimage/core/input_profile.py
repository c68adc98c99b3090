"""Is an image like the ones the model learned from? A cheap check on the model's own input array.

A confident answer on an image unlike the training images (a photo, a scan of another body part, an
over-exposed film) is not to be trusted, however high its probability: softmax confidence is known to stay
high far from the training data. The trainer records the band in which the training images' brightness
(mean of the input array) and contrast (its standard deviation) lie, between two quantiles; serving flags an
image outside either band for review with the reason ``outside_training_distribution``.

Pure numpy on the HxWxC 0..255 array serving already makes: no model call, no second pass over the bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

# The share of training images left outside the band, half at each end.
DEFAULT_QUANTILES = (0.005, 0.995)
# The band is widened by this share of its own width on each side: the quantiles of a few thousand
# training images are themselves uncertain, and a sharp edge would flag ordinary images.
MARGIN = 0.1
STATISTICS = ("mean", "std")


def statistics(array: np.ndarray) -> dict[str, float]:
    """Brightness and contrast of one model input array (0..255)."""
    values = np.asarray(array, dtype=np.float32)
    return {"mean": float(values.mean()), "std": float(values.std())}


@dataclass(frozen=True)
class InputProfile:
    """The band of each statistic that the training images span (``model.json`` ``input_profile``)."""

    bands: dict[str, tuple[float, float]]
    quantiles: tuple[float, float] = DEFAULT_QUANTILES
    n: int = 0

    @classmethod
    def fit(cls, arrays: np.ndarray, quantiles: tuple[float, float] = DEFAULT_QUANTILES) -> InputProfile:
        """The band of the training images: n x H x W (x C) arrays."""
        values = np.asarray(arrays, dtype=np.float32)
        if len(values) == 0:
            raise ValueError("an input profile needs at least one training image")
        flat = values.reshape(len(values), -1)
        measured = {"mean": flat.mean(axis=1), "std": flat.std(axis=1)}
        bands = {}
        for name in STATISTICS:
            low, high = (float(v) for v in np.quantile(measured[name], quantiles))
            pad = MARGIN * (high - low)
            bands[name] = (round(low - pad, 4), round(high + pad, 4))
        return cls(bands=bands, quantiles=quantiles, n=len(values))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InputProfile:
        try:
            bands = {name: (float(data[name][0]), float(data[name][1])) for name in STATISTICS}
            quantiles = (float(data["quantiles"][0]), float(data["quantiles"][1]))
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise ValueError(f"input_profile needs mean, std and quantiles pairs: {exc}") from None
        for name, (low, high) in bands.items():
            if low > high:
                raise ValueError(f"input_profile {name} band [{low}, {high}] is empty")
        return cls(bands=bands, quantiles=quantiles, n=int(data.get("n", 0)))

    def to_dict(self) -> dict[str, Any]:
        return {
            **{name: list(band) for name, band in self.bands.items()},
            "quantiles": list(self.quantiles),
            "n": self.n,
            "statistics": "mean and standard deviation of the model input array (0..255)",
        }

    def outside(self, array: np.ndarray) -> list[str]:
        """The statistics of this array that fall outside the training band (empty: in distribution)."""
        measured = statistics(array)
        return [name for name, (low, high) in self.bands.items() if not low <= measured[name] <= high]

    def rate(self, arrays: np.ndarray) -> float:
        """The share of these arrays flagged as outside the training distribution."""
        if len(arrays) == 0:
            return 0.0
        return round(sum(bool(self.outside(a)) for a in arrays) / len(arrays), 6)
