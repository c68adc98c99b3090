"""The class-activation heatmap as a client sees it: a PNG to lay over the uploaded image.

The model sees the upload squeezed to a square; the map (at the feature map's few cells) is stretched
back to the upload's aspect ratio, with its longest side `HEATMAP_LONG_SIDE` px and its shortest at least
`MIN_SIDE` px (an extreme strip of an image is capped at `MAX_SIDE` along its length), and coloured with a
perceptual colour map whose alpha grows with the activation, so cold regions leave the image visible.
The client scales the PNG to the displayed image (same aspect ratio, so no distortion).
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

HEATMAP_LONG_SIDE = 256
MIN_SIDE = 64
MAX_SIDE = 1024
MAX_ALPHA = 200  # of 255 at the hottest cell: the anatomy stays readable under it

# The "turbo" colour map (Google, Apache-2.0) at 9 stops, interpolated linearly between them.
_TURBO_STOPS = np.array(
    [
        [48, 18, 59],
        [70, 107, 227],
        [40, 187, 236],
        [49, 242, 153],
        [162, 252, 60],
        [237, 208, 58],
        [251, 128, 34],
        [208, 47, 5],
        [122, 4, 3],
    ],
    dtype=np.float32,
)


@dataclass(frozen=True)
class Heatmap:
    png: bytes
    width: int
    height: int

    def api_body(self) -> dict[str, Any]:
        return {
            "png_base64": base64.b64encode(self.png).decode("ascii"),
            "width": self.width,
            "height": self.height,
        }


def overlay_size(image_size: tuple[int, int], long_side: int = HEATMAP_LONG_SIDE) -> tuple[int, int]:
    """(width, height) with the upload's aspect ratio, the longest side ``long_side`` unless that leaves
    the shortest under `MIN_SIDE`; no side over `MAX_SIDE`."""
    width, height = image_size
    if width <= 0 or height <= 0:
        raise ValueError(f"image size {image_size} has no area")
    scale = max(long_side / max(width, height), MIN_SIDE / min(width, height))
    return (
        min(MAX_SIDE, max(MIN_SIDE, round(width * scale))),
        min(MAX_SIDE, max(MIN_SIDE, round(height * scale))),
    )


def colourise(values: np.ndarray) -> np.ndarray:
    """``h x w`` values in 0..1 to ``h x w x 4`` uint8 RGBA (turbo colours, alpha rising with value)."""
    v = np.clip(values.astype(np.float32), 0.0, 1.0)
    position = v * (len(_TURBO_STOPS) - 1)
    low = np.floor(position).astype(np.int64)
    high = np.minimum(low + 1, len(_TURBO_STOPS) - 1)
    frac = (position - low)[..., None]
    rgb = _TURBO_STOPS[low] * (1 - frac) + _TURBO_STOPS[high] * frac
    alpha = (v * MAX_ALPHA)[..., None]
    return np.concatenate([rgb, alpha], axis=-1).round().astype(np.uint8)


def render_heatmap(
    cam: np.ndarray, image_size: tuple[int, int], long_side: int = HEATMAP_LONG_SIDE
) -> Heatmap:
    """A 0..1 ``h x w`` map (the model's square view) to a PNG at the upload's aspect ratio."""
    width, height = overlay_size(image_size, long_side)
    grid = Image.fromarray(np.clip(cam, 0.0, 1.0).astype(np.float32), mode="F")
    stretched = np.asarray(grid.resize((width, height), Image.Resampling.BICUBIC), dtype=np.float32)
    buf = io.BytesIO()
    Image.fromarray(colourise(stretched), "RGBA").save(buf, "PNG", optimize=False)
    return Heatmap(png=buf.getvalue(), width=width, height=height)
