"""The one decoder: the bytes of a JPEG, PNG or DICOM upload to an 8-bit gray ("L") or RGB Pillow image.

Annotate's strict check (``inspect_image``, in this module), the trainer
(``medimage.core.preprocess.load_image_array``) and serving (``medimage.inference.decode.decode_image``)
all call ``decode_to_gray_or_rgb``, so a model is served exactly the pixels it was trained on.

- JPEG: Pillow; with a target size, in draft mode (the decoder scales by 1/2, 1/4 or 1/8 while decoding,
  never below the target), serving's fast path.
- PNG, 8-bit (L, LA, P, RGB, RGBA): Pillow's conversion to L or RGB; alpha is dropped, not composited.
- PNG, 16-bit: Pillow's ``convert("L")`` clips every value above 255 (a 16-bit X-ray turns white) and
  keeps only the high byte of 16-bit colour, so the samples are read whole and scaled to 0..255 by their
  significant bits. With an ``sBIT`` chunk, the PNG specification says which bits are significant: the
  high ones, so ``value >> (16 - sBIT)`` spans 0..2**sBIT - 1. Without one, the depth B is the smallest
  in 8..16 with ``max < 2**B`` and the scale is ``value * 255 / (2**B - 1)``. Why this rule: detector
  exports often store 10-, 12- or 14-bit values as they are, without ``sBIT`` (a 12-bit image peaks
  below 4096), while a 16-bit copy of an 8-bit image (``v * 257`` or ``v << 8``) reaches the top of the
  16-bit range, B = 16, and maps back to ``v`` within rounding. All images of one depth share one scale,
  so the differences in exposure between images stay as recorded. Stretching each image to its own
  min..max would brighten dark images and flatten bright ones, a variation the trainer never saw (its
  8-bit images are not stretched). The cost: an image that never reaches the upper half of its true
  range reads one bit shallower (twice as bright); an ``sBIT`` chunk removes that ambiguity.
- DICOM: ``medimage.core.dicom`` (Modality LUT, VOI LUT or window, MONOCHROME1), always gray.

The byte and pixel limits (``ImageLimits``) apply to every format, checked from the header before the
pixels are decoded.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from medimage.core.errors import RejectedInput
from medimage.core.images import (
    DEFAULT_LIMITS,
    SNIFF_BYTES,
    ImageLimits,
    check_dimensions,
    check_size,
    decoder_errors,
    open_image,
    sniff_format,
)

if TYPE_CHECKING:
    from medimage.core.dicom import DicomTags

MODES = ("L", "RGB")
# Pillow modes whose natural 8-bit form is gray; every other mode (RGB, RGBA, P, CMYK, ...) becomes RGB.
_GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "F"})
# PNG IHDR colour type -> (Pillow raw mode that reads the low bytes, colour channels, the name we report).
_PNG16 = {
    0: ("", 1, "I;16"),
    4: ("RGBA", 1, "LA;16"),
    2: ("RGB;16L", 3, "RGB;16"),
    6: ("RGBA;16L", 3, "RGBA;16"),
}


@dataclass(frozen=True)
class DecodedImage:
    """``image`` is "L" or "RGB", at full resolution or JPEG-draft-reduced; width and height are the
    stored image's. ``source_mode`` names the stored pixels ("L", "P", "RGB;16", ...; "L" for DICOM)."""

    image: Image.Image
    format: str
    width: int
    height: int
    source_mode: str
    dicom: DicomTags | None = None


@dataclass(frozen=True)
class ImageInfo:
    """``mode`` is Pillow's name for the stored JPEG/PNG pixels ("L", "RGB", "P", "I;16", ...) and "L"
    for a DICOM (decoded to 8-bit gray); ``dicom`` holds the few header fields a caller may need."""

    sha256: str
    format: str
    width: int
    height: int
    mode: str
    size_bytes: int
    dicom: DicomTags | None = None


def decode_to_gray_or_rgb(
    data: bytes,
    mode: str | None = None,
    draft_size: int | None = None,
    limits: ImageLimits | None = DEFAULT_LIMITS,
) -> DecodedImage:
    """Decode an upload completely, or raise RejectedInput with a stable code.

    ``mode``: "L" or "RGB", the model's colour mode; None keeps gray images gray and colour images RGB.
    ``draft_size``: the size the caller will resize to; lets a JPEG decode at reduced scale (needs mode).
    ``limits``: None checks only that there are bytes and that the format is known (the trainer's data
    passed annotate's limits already, whatever they were configured to).
    """
    if mode not in (None, *MODES):
        raise ValueError(f"mode must be one of {MODES} or None, not {mode!r}")
    if sniff_format(data[:SNIFF_BYTES]) == "dicom":
        return _decode_dicom(data, mode, limits)
    image, fmt = open_image(data, limits)
    width, height, source_mode = image.width, image.height, image.mode
    with decoder_errors(data, fmt):
        if fmt == "png" and _png_bit_depth(data) == 16:
            image, source_mode = _png16_to_8bit(image, data)
        target = mode or ("L" if image.mode in _GRAY_MODES else "RGB")
        if fmt == "jpeg" and draft_size and mode:
            image.draft(mode, (draft_size, draft_size))
        image.load()
        if image.mode != target:
            image = image.convert(target)
    return DecodedImage(image=image, format=fmt, width=width, height=height, source_mode=source_mode)


def inspect_image(data: bytes, limits: ImageLimits = DEFAULT_LIMITS) -> ImageInfo:
    """Validate an upload completely (a full decode, the one training and serving use) and describe it,
    or raise RejectedInput."""
    decoded = decode_to_gray_or_rgb(data, limits=limits)
    return ImageInfo(
        sha256=hashlib.sha256(data).hexdigest(),
        format=decoded.format,
        width=decoded.width,
        height=decoded.height,
        mode=decoded.source_mode,
        size_bytes=len(data),
        dicom=decoded.dicom,
    )


def _decode_dicom(data: bytes, mode: str | None, limits: ImageLimits | None) -> DecodedImage:
    # Imported on the first DICOM only: pydicom costs 0.2-0.4 s of import, which JPEG serving never pays.
    from medimage.core import dicom

    if limits is None:
        if not data:
            raise RejectedInput("the file is empty (0 bytes)", "empty")
    else:
        check_size(len(data), limits)
    parsed = dicom.read_dicom(data)
    if limits is not None:
        check_dimensions(parsed.width, parsed.height, limits)
    image = Image.fromarray(dicom.to_gray(parsed))
    if mode == "RGB":
        image = image.convert("RGB")
    return DecodedImage(
        image=image,
        format="dicom",
        width=parsed.width,
        height=parsed.height,
        source_mode="L",
        dicom=parsed.tags,
    )


def _png_bit_depth(data: bytes) -> int:
    """IHDR is always the first chunk: signature (8), length (4), type (4), width, height, then depth."""
    return data[24] if len(data) > 25 and data[12:16] == b"IHDR" else 0


def png_significant_bits(data: bytes) -> tuple[int, ...] | None:
    """The sBIT chunk's values (one per channel), or None; sBIT must come before IDAT."""
    pos = 8
    while pos + 8 <= len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        kind = data[pos + 4 : pos + 8]
        if kind in (b"IDAT", b"IEND"):
            return None
        if kind == b"sBIT":
            return tuple(data[pos + 8 : pos + 8 + length]) or None
        pos += 12 + length
    return None


def scale_16bit(values: np.ndarray, significant_bits: tuple[int, ...] | None) -> np.ndarray:
    """16-bit samples (HxW or HxWxC, colour channels only) to uint8 by the rule in the module docstring."""
    values = values.astype(np.uint32)
    if significant_bits:
        channels = 1 if values.ndim == 2 else values.shape[2]
        bits = np.clip(np.array(significant_bits[:channels], dtype=np.uint32), 1, 16)
        values = values >> (16 - bits)
        top = (2**bits - 1).astype(np.float64)
    else:
        top = float(2 ** max(8, int(values.max(initial=0)).bit_length()) - 1)
    return np.clip(np.rint(values * (255.0 / top)), 0, 255).astype(np.uint8)


def _png16_to_8bit(image: Image.Image, data: bytes) -> tuple[Image.Image, str]:
    """Read all 16 bits of each sample and scale them: Pillow's own 8-bit modes for 16-bit colour keep
    only the high byte. A second read with a raw mode that picks the low bytes completes them."""
    colour_type = data[25]
    if colour_type not in _PNG16:
        raise RejectedInput(f"the PNG colour type {colour_type} is not valid at 16 bits", "unreadable")
    low_rawmode, channels, name = _PNG16[colour_type]
    if colour_type == 0:
        values = np.asarray(image)
    elif colour_type == 4:
        # Gray+alpha: read as 8-bit RGBA, the four bytes are gray high, gray low, alpha high, alpha low.
        raw = _read_with_rawmode(data, low_rawmode).astype(np.uint16)
        values = (raw[..., 0] << 8) | raw[..., 1]
    else:
        high = np.asarray(image)[..., :channels].astype(np.uint16)
        low = _read_with_rawmode(data, low_rawmode)[..., :channels].astype(np.uint16)
        values = (high << 8) | low
    return Image.fromarray(scale_16bit(values, png_significant_bits(data))), name


def _read_with_rawmode(data: bytes, rawmode: str) -> np.ndarray:
    """Decode the PNG again, unpacking the same bytes per pixel with another Pillow raw mode."""
    image = Image.open(io.BytesIO(data), formats=["PNG"])
    (tile,) = image.tile
    image.tile = [tile._replace(args=rawmode)]
    return np.asarray(image)
