"""The one image preprocessing, shared by the trainer and every serving path.

``model.json`` describes it (``PreprocessSpec.to_dict``), so inference needs nothing but the model
directory. The network itself rescales pixel values (a Rescaling layer inside the model), so the
array handed to the interpreter holds plain 0..255 floats: nothing to get wrong at serving time.
Decoding (JPEG, PNG including 16-bit, DICOM) is ``medimage.core.decoding``, the one decoder serving uses.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from PIL import Image

from medimage.core.decoding import decode_to_gray_or_rgb
from medimage.core.images import ImageLimits

_RESAMPLE = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}


@dataclass(frozen=True)
class PreprocessSpec:
    """How pixels become a model's input, written into ``model.json`` so serving repeats training exactly."""

    image_size: int = 128
    channels: int = 1
    resize: str = "bilinear"
    # What the model expects as input values; the scaling to [0, 1] happens inside the model.
    input_range: tuple[float, float] = (0.0, 255.0)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["input_range"] = list(self.input_range)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PreprocessSpec:
        return cls(
            image_size=int(data["image_size"]),
            channels=int(data["channels"]),
            resize=str(data.get("resize", "bilinear")),
            input_range=tuple(data.get("input_range", (0.0, 255.0))),  # type: ignore[arg-type]
        )


def decode(data: bytes, spec: PreprocessSpec, limits: ImageLimits | None = None) -> Image.Image:
    """Decode at reduced scale where the format allows (JPEG draft mode), in the model's colour mode.
    ``limits=None``: the trainer's images passed annotate's limits already, whatever they were set to."""
    mode = "L" if spec.channels == 1 else "RGB"
    return decode_to_gray_or_rgb(data, mode=mode, draft_size=spec.image_size, limits=limits).image


def to_pixels(image: Image.Image, spec: PreprocessSpec) -> np.ndarray:
    """Resize (aspect ratio not kept, as the trainer saw it) to an HxWxC uint8 array: the 8-bit pixels
    themselves, which serving writes straight into the model's input tensor."""
    if image.size != (spec.image_size, spec.image_size):
        image = image.resize((spec.image_size, spec.image_size), _RESAMPLE[spec.resize])
    pixels = np.asarray(image)
    return pixels[:, :, None] if pixels.ndim == 2 else pixels


def to_array(image: Image.Image, spec: PreprocessSpec) -> np.ndarray:
    """`to_pixels` as an HxWxC float32 array of 0..255 (the trainer's batches)."""
    return to_pixels(image, spec).astype(np.float32)


def load_image_array(data: bytes, spec: PreprocessSpec, limits: ImageLimits | None = None) -> np.ndarray:
    """Bytes of a JPEG, PNG or DICOM to the model's input array (without the batch axis)."""
    return to_array(decode(data, spec, limits), spec)
