"""Image validation: is this upload a real, complete, reasonably sized JPEG, PNG or DICOM file?

The extension is never trusted: the magic bytes must match and the whole image must decode. Sizes are
checked from the header before decoding, so a decompression bomb is refused without being expanded.
``ImageLimits`` is the one home of the byte and pixel limits; every other module imports it. The
decoding itself, and the full check of an upload that needs it (``inspect_image``), is
``medimage.core.decoding``, which builds on this module.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from medimage.core.errors import RejectedInput

JPEG_MAGIC = b"\xff\xd8\xff"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# A DICOM file (PS3.10) is a 128-byte preamble, then "DICM", then the meta header.
DICOM_MAGIC = b"DICM"
DICOM_MAGIC_OFFSET = 128
SNIFF_BYTES = DICOM_MAGIC_OFFSET + len(DICOM_MAGIC)
# Pillow's format names -> ours, for the formats Pillow opens (DICOM goes through pydicom).
FORMATS = {"JPEG": "jpeg", "PNG": "png"}


# File names that folder trees (`medimage train|evaluate|predict|demo --data`) read as images.
IMAGE_SUFFIXES = frozenset({".jpeg", ".jpg", ".png", ".dcm", ".dicom"})


@dataclass(frozen=True)
class ImageLimits:
    """What an upload may be: at most ``max_bytes`` and ``max_pixels``, no side under ``min_side``."""

    max_bytes: int = 30 * 1024 * 1024
    max_pixels: int = 50_000_000
    min_side: int = 16


DEFAULT_LIMITS = ImageLimits()


def sniff_format(head: bytes) -> str | None:
    """``head``: the first ``SNIFF_BYTES`` bytes (fewer are enough for JPEG and PNG)."""
    if head.startswith(JPEG_MAGIC):
        return "jpeg"
    if head.startswith(PNG_MAGIC):
        return "png"
    if head[DICOM_MAGIC_OFFSET:SNIFF_BYTES] == DICOM_MAGIC:
        return "dicom"
    return None


def sniff_or_reject(data: bytes) -> str:
    fmt = sniff_format(data[:SNIFF_BYTES])
    if fmt is None:
        raise RejectedInput(
            "not a JPEG, PNG or DICOM file (its first bytes match none of these formats)", "not_an_image"
        )
    return fmt


def check_size(size_bytes: int, limits: ImageLimits = DEFAULT_LIMITS) -> None:
    """Cheap check before downloading: refuse empty and too-large objects by their length alone."""
    if size_bytes <= 0:
        raise RejectedInput("the file is empty (0 bytes)", "empty")
    if size_bytes > limits.max_bytes:
        raise RejectedInput(
            f"the file is {size_bytes} bytes, over the limit of {limits.max_bytes} bytes", "too_large"
        )


def check_dimensions(width: int, height: int, limits: ImageLimits = DEFAULT_LIMITS) -> None:
    """From the header, before any pixel is decoded: decompression bombs and thumbnails are refused."""
    if width * height > limits.max_pixels:
        raise RejectedInput(
            f"the image is {width}x{height} pixels, over the limit of {limits.max_pixels} pixels",
            "too_many_pixels",
        )
    if min(width, height) < limits.min_side:
        raise RejectedInput(
            f"the image is {width}x{height} pixels, under the minimum side of {limits.min_side}",
            "too_small",
        )


_JPEG_END = b"\xff\xd9"
_PNG_END = b"IEND"


def looks_truncated(data: bytes, fmt: str) -> bool:
    """A complete JPEG ends with its EOI marker, a complete PNG with its IEND chunk."""
    tail = data[-16:].rstrip(b"\x00")
    return not tail.endswith(_JPEG_END) if fmt == "jpeg" else _PNG_END not in tail


@contextmanager
def decoder_errors(data: bytes, fmt: str) -> Iterator[None]:
    """Turn whatever Pillow raises while opening or decoding into RejectedInput with a precise code."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    except RejectedInput:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise RejectedInput(f"the image is a decompression bomb: {exc}", "too_many_pixels") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        if looks_truncated(data, fmt) or "truncated" in str(exc):
            raise RejectedInput(f"the {fmt.upper()} image is truncated: {exc}", "truncated") from None
        if isinstance(exc, UnidentifiedImageError | SyntaxError):  # a plugin's "not a JPEG file"
            raise RejectedInput(f"the {fmt.upper()} header is unreadable", "unreadable") from None
        raise RejectedInput(f"the {fmt.upper()} data does not decode: {exc}", "unreadable") from None


def open_image(data: bytes, limits: ImageLimits | None = DEFAULT_LIMITS) -> tuple[Image.Image, str]:
    """A JPEG or PNG, checked from its header only: length, magic bytes, pixel count, smallest side. The
    pixels are decoded later, inside ``decoder_errors``. ``limits=None`` checks the magic bytes alone.
    A DICOM has no Pillow image before its pixels are decoded: ``medimage.core.decoding`` handles it."""
    if limits is None:
        if not data:
            raise RejectedInput("the file is empty (0 bytes)", "empty")
    else:
        check_size(len(data), limits)
    fmt = sniff_or_reject(data)
    if fmt not in FORMATS.values():
        raise ValueError(f"open_image takes JPEG or PNG, not {fmt}: decode it with medimage.core.decoding")
    with decoder_errors(data, fmt):
        image = _open_with_plugin(data, fmt)
        if limits is not None:
            check_dimensions(image.width, image.height, limits)
        if Image.MAX_IMAGE_PIXELS and image.width * image.height > Image.MAX_IMAGE_PIXELS:
            raise Image.DecompressionBombWarning(
                f"{image.width}x{image.height} pixels, over Pillow's limit of {Image.MAX_IMAGE_PIXELS}"
            )
    return image, fmt


def _open_with_plugin(data: bytes, fmt: str) -> Image.Image:
    """Open through the Pillow plugin of the format the magic bytes named. ``Image.open`` would first import
    every common plugin (BMP, GIF, PPM, PNG for a JPEG) to probe for a format already known: 5-7 ms of each
    serving cold start. Pillow's own size check of ``Image.open`` is the caller's (above). A JPEG's EXIF is
    not parsed on open (``medimage.core.jpeg``)."""
    if fmt == "jpeg":
        from medimage.core.jpeg import JpegUpload

        return JpegUpload(io.BytesIO(data))
    from PIL import PngImagePlugin

    return PngImagePlugin.PngImageFile(io.BytesIO(data))
