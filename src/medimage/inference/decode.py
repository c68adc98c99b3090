"""Validate and decode a client's image in one pass, with a precise reason when it cannot be used.

`medimage.core.decoding.inspect_image` decodes the whole image at full resolution, which alone costs more
than the 10 ms budget for a 2-megapixel X-ray. Serving instead checks size and magic bytes, reads the
header (pixel count, decompression bombs), then decodes a JPEG in draft mode, through the decoder that
`medimage.core.preprocess.load_image_array` uses, so the array is the one the trainer saw. PNG (16-bit
included) and DICOM decode at full resolution through the same decoder.
"""

from __future__ import annotations

import numpy as np

from medimage.core.decoding import decode_to_gray_or_rgb
from medimage.core.images import DEFAULT_LIMITS, ImageLimits
from medimage.core.preprocess import PreprocessSpec, to_pixels


def decode_pixels(data: bytes, spec: PreprocessSpec, limits: ImageLimits = DEFAULT_LIMITS) -> np.ndarray:
    """Bytes of a JPEG, PNG or DICOM to the model's input pixels (HxWxC uint8, 0..255), or RejectedInput
    with a stable code. `TFLiteClassifier.run` converts them while writing its input tensor: no float copy
    is made on the way."""
    return decode_with_size(data, spec, limits)[0]


def decode_image(data: bytes, spec: PreprocessSpec, limits: ImageLimits = DEFAULT_LIMITS) -> np.ndarray:
    """`decode_pixels` as the float32 array the trainer's `load_image_array` gives, pixel for pixel."""
    return decode_pixels(data, spec, limits).astype(np.float32)


def decode_with_size(
    data: bytes, spec: PreprocessSpec, limits: ImageLimits = DEFAULT_LIMITS
) -> tuple[np.ndarray, tuple[int, int]]:
    """The model's input pixels and the stored image's (width, height): a heatmap undoes the square
    resize with them."""
    mode = "L" if spec.channels == 1 else "RGB"
    decoded = decode_to_gray_or_rgb(data, mode=mode, draft_size=spec.image_size, limits=limits)
    return to_pixels(decoded.image, spec), (decoded.width, decoded.height)
