"""Image validation: is this upload a real, complete, reasonably sized JPEG or PNG?

The extension is never trusted: the magic bytes must match and the whole image must decode. Sizes are
checked from the header before decoding, so a decompression bomb is refused without being expanded.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from medimage.core.errors import RejectedInput

JPEG_MAGIC = b"\xff\xd8\xff"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
FORMATS = {"JPEG": "jpeg", "PNG": "png"}


@dataclass(frozen=True)
class ImageLimits:
    max_bytes: int = 30 * 1024 * 1024
    max_pixels: int = 50_000_000
    min_side: int = 16


DEFAULT_LIMITS = ImageLimits()


@dataclass(frozen=True)
class ImageInfo:
    sha256: str
    format: str
    width: int
    height: int
    mode: str
    size_bytes: int


def sniff_format(head: bytes) -> str | None:
    if head.startswith(JPEG_MAGIC):
        return "jpeg"
    if head.startswith(PNG_MAGIC):
        return "png"
    return None


def check_size(size_bytes: int, limits: ImageLimits = DEFAULT_LIMITS) -> None:
    """Cheap check before downloading: refuse empty and too-large objects by their length alone."""
    if size_bytes <= 0:
        raise RejectedInput("the file is empty (0 bytes)", "empty")
    if size_bytes > limits.max_bytes:
        raise RejectedInput(
            f"the file is {size_bytes} bytes, over the limit of {limits.max_bytes} bytes", "too_large"
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
        if isinstance(exc, UnidentifiedImageError):
            raise RejectedInput(f"the {fmt.upper()} header is unreadable", "unreadable") from None
        raise RejectedInput(f"the {fmt.upper()} data does not decode: {exc}", "unreadable") from None


def open_image(data: bytes, limits: ImageLimits = DEFAULT_LIMITS) -> tuple[Image.Image, str]:
    """Checks that need only the header: length, magic bytes, pixel count, smallest side. The pixels are
    decoded later by the caller, inside ``decoder_errors``."""
    check_size(len(data), limits)
    fmt = sniff_format(data[:8])
    if fmt is None:
        raise RejectedInput("not a JPEG or PNG file (its first bytes match neither format)", "not_an_image")
    with decoder_errors(data, fmt):
        image = Image.open(io.BytesIO(data), formats=list(FORMATS))
        width, height = image.size
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
    return image, fmt


def inspect_image(data: bytes, limits: ImageLimits = DEFAULT_LIMITS) -> ImageInfo:
    """Validate an upload completely (a full decode) and describe it, or raise RejectedInput."""
    image, fmt = open_image(data, limits)
    with decoder_errors(data, fmt):
        image.load()
    return ImageInfo(
        sha256=hashlib.sha256(data).hexdigest(),
        format=FORMATS.get(image.format or "", fmt),
        width=image.width,
        height=image.height,
        mode=image.mode,
        size_bytes=len(data),
    )
