"""DICOM to 8-bit gray, in the order of DICOM PS3.3 C.11 / PS3.4 N.2: stored values, then the Modality
LUT (Rescale Slope/Intercept or a Modality LUT Sequence), then the VOI LUT (a VOI LUT Sequence, else the
first Window Center/Width), then MONOCHROME1 inversion. Without a VOI LUT or a window the output is the
whole stored range (Bits Stored, Pixel Representation) taken through the Modality LUT, so a 12-bit image
spans 0..4095 -> 0..255 whatever its content: no per-image contrast stretch the trainer never saw.

Only single-frame grayscale images are accepted (MONOCHROME1/2, Bits Stored 8..16); everything else is
refused with a stable code: ``dicom_multiframe``, ``dicom_no_pixels``, ``dicom_unsupported`` (colour,
bit depth, a transfer syntax no installed handler decodes) and ``dicom_unreadable`` (corrupt).

Pixel-data handlers: pydicom decodes native (uncompressed) and RLE Lossless data itself and hands
compressed data to ``python-gdcm``, chosen over the pylibjpeg plugins because:

- coverage: one wheel decodes JPEG Baseline/Extended/Lossless (Process 14 SV1, the usual syntax of
  compressed CR/DX archives), JPEG-LS and JPEG 2000. With pylibjpeg, JPEG Lossless and JPEG-LS need
  ``pylibjpeg-libjpeg``;
- licence: python-gdcm is Apache-2.0 (GDCM itself BSD), like this project; ``pylibjpeg-libjpeg`` is
  GPLv3, which a layer shipped with Apache-2.0 code should not carry. The MIT pylibjpeg parts alone
  (openjpeg + rle) would leave JPEG Lossless undecodable;
- wheels for the python3.13 Lambda runtime exist: python-gdcm 3.2.6 as manylinux_2_28 (Amazon Linux
  2023 has glibc 2.34), 3.0.26 as manylinux2014;
- the cost is size: a 13 MB wheel, 43.5 MB unpacked, against about 20 MB unpacked for pylibjpeg with
  libjpeg, openjpeg and rle (7 MB without libjpeg). The layer stays far below Lambda's 250 MB.

PHI: nothing from the header is logged, put in an error message or returned except ``DicomTags``, whose
``patient_id`` is hidden from ``repr``. pydicom's own log records (they can quote element values) are
dropped, its warnings are silenced while a file is read, and its exception texts are never passed on.
"""

from __future__ import annotations

import io
import logging
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.pixels import apply_modality_lut, apply_voi_lut
from pydicom.pixels.decoders.base import get_decoder

from medimage.core.errors import RejectedInput


def _drop_record(record: logging.LogRecord) -> bool:
    return False


# pydicom's log records can quote element values (with its debugging on, every value it reads: names,
# IDs, dates). A filter on each of its loggers drops them before any handler, whatever levels or
# handlers are configured later; propagate=False keeps them from the root's handlers as well.
for _name in [name for name in logging.root.manager.loggerDict if name.split(".")[0] == "pydicom"]:
    logging.getLogger(_name).addFilter(_drop_record)
    logging.getLogger(_name).propagate = False

MONOCHROME = ("MONOCHROME1", "MONOCHROME2")
# Defined terms (PS3.3 C.7.6.3.1.2) that may be quoted in a rejection; any other text is not repeated.
_PHOTOMETRIC_TERMS = frozenset(
    {"RGB", "PALETTE COLOR", "YBR_FULL", "YBR_FULL_422", "YBR_PARTIAL_420", "YBR_PARTIAL_422", "YBR_ICT"}
    | {"YBR_RCT", "XYB", "ARGB", "CMYK", "HSV"}
)
MIN_BITS_STORED, MAX_BITS_STORED = 8, 16
_UID = re.compile(r"[0-9.]{1,64}")


@dataclass(frozen=True)
class DicomTags:
    """The header fields a caller may need, and no other.

    ``patient_id`` is the raw Patient ID, there only for the caller to hash (e.g. to group a patient's
    images into one split). It is PHI: never log it, store it or send it anywhere unhashed. It is left
    out of ``repr``; ``dataclasses.asdict`` would still include it.
    """

    patient_id: str = field(repr=False)
    modality: str
    body_part: str
    view_position: str
    photometric: str
    bits_stored: int
    transfer_syntax: str


@dataclass(frozen=True)
class DicomImage:
    """A parsed file whose header passed every check; the pixels are not decoded yet."""

    dataset: Dataset = field(repr=False)
    width: int
    height: int
    tags: DicomTags


@contextmanager
def _quiet(message: str) -> Iterator[None]:
    """pydicom's warnings and errors may quote header values: silence them, reject with a fixed text."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    except RejectedInput:
        raise
    except Exception:
        raise RejectedInput(message, "dicom_unreadable") from None


def read_dicom(data: bytes) -> DicomImage:
    """Parse the file and check everything that needs only the header (frames, photometric, bit depth,
    transfer syntax). Rows x Columns come back so the caller can apply its pixel limits before decoding."""
    with _quiet("the DICOM header does not parse"):
        ds = pydicom.dcmread(io.BytesIO(data))
        syntax = str(ds.file_meta.TransferSyntaxUID)
        frames = int(ds.get("NumberOfFrames") or 1)
        has_pixels = "PixelData" in ds
        photometric = str(ds.get("PhotometricInterpretation", "")).strip().upper()
        samples = int(ds.get("SamplesPerPixel") or 1)
        bits_stored = int(ds.get("BitsStored") or 0)
    if frames > 1:
        raise RejectedInput(
            f"the DICOM file has {frames} frames; only single images are accepted", "dicom_multiframe"
        )
    if not has_pixels:
        raise RejectedInput("the DICOM file has no Pixel Data", "dicom_no_pixels")
    if photometric not in MONOCHROME or samples != 1:
        raise RejectedInput(
            f"the DICOM photometric interpretation {_quotable(photometric, _PHOTOMETRIC_TERMS)} is not"
            " MONOCHROME1/2 (single-sample gray)",
            "dicom_unsupported",
        )
    if not MIN_BITS_STORED <= bits_stored <= MAX_BITS_STORED:
        raise RejectedInput(
            f"the DICOM Bits Stored is {bits_stored}, outside {MIN_BITS_STORED}..{MAX_BITS_STORED}",
            "dicom_unsupported",
        )
    _check_transfer_syntax(syntax)
    with _quiet("the DICOM header does not parse"):
        width, height = int(ds.Columns), int(ds.Rows)
        tags = DicomTags(
            patient_id=str(ds.get("PatientID") or ""),
            modality=str(ds.get("Modality") or ""),
            body_part=str(ds.get("BodyPartExamined") or ""),
            view_position=str(ds.get("ViewPosition") or ""),
            photometric=photometric,
            bits_stored=bits_stored,
            transfer_syntax=syntax,
        )
    return DicomImage(dataset=ds, width=width, height=height, tags=tags)


def _quotable(value: str, allowed: frozenset[str]) -> str:
    """Header text goes into a message (and so into logs and quarantine records) only if it is a known
    technical term: a free-text value could hold anything, PHI included."""
    return repr(value) if value in allowed else "(a non-standard value)"


def _check_transfer_syntax(syntax: str) -> None:
    shown = syntax if _UID.fullmatch(syntax) else "(not a valid UID)"
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError:
        raise RejectedInput(
            f"the DICOM transfer syntax {shown} is not supported", "dicom_unsupported"
        ) from None
    if not decoder.is_available:
        raise RejectedInput(
            f"no installed handler decodes the DICOM transfer syntax {shown}", "dicom_unsupported"
        )


def to_gray(image: DicomImage) -> np.ndarray:
    """Decode the pixels and map them to an HxW uint8 array (0 black, 255 white)."""
    ds = image.dataset
    with _quiet("the DICOM pixel data does not decode"):
        stored = ds.pixel_array
    if stored.shape != (image.height, image.width):
        raise RejectedInput(f"the DICOM pixel data has shape {stored.shape}", "dicom_unreadable")
    low, high = stored_range(ds)
    lut = gray_lut(ds, low, high)
    # Every step is a function of the stored value alone: map all 2**BitsStored values once, then index.
    if low == 0 and stored.dtype.kind == "u":
        return lut[np.minimum(stored, high)]
    return lut[np.clip(stored, low, high).astype(np.int64) - low]


def stored_range(ds: Dataset) -> tuple[int, int]:
    """The values Bits Stored and Pixel Representation allow."""
    bits = int(ds.BitsStored)
    if int(ds.get("PixelRepresentation") or 0) == 1:
        return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return 0, 2**bits - 1


def gray_lut(ds: Dataset, low: int, high: int) -> np.ndarray:
    """uint8 output for each stored value low..high: Modality LUT, VOI LUT or window, MONOCHROME1."""
    values = np.arange(low, high + 1, dtype=np.int64 if low < 0 else np.uint16)
    with _quiet("the DICOM Modality LUT cannot be applied"):
        values = apply_modality_lut(values, ds)
    out_low, out_high = _modality_output_range(ds, low, high)
    if _has_voi_lut(ds):
        with _quiet("the DICOM VOI LUT cannot be applied"):
            values = apply_voi_lut(values, ds, index=0)
        out_low, out_high = 0, 2 ** int(ds.VOILUTSequence[0].LUTDescriptor[2]) - 1
    elif _has_window(ds):
        # pydicom's window maps onto the Modality LUT's output range, the one computed above.
        with _quiet("the DICOM window cannot be applied"):
            values = apply_voi_lut(values, ds, index=0)
    span = (out_high - out_low) or 1
    gray = np.clip(np.rint((np.asarray(values, dtype=np.float64) - out_low) * (255.0 / span)), 0, 255)
    lut = gray.astype(np.uint8)
    if str(ds.PhotometricInterpretation).strip().upper() == "MONOCHROME1":
        lut = 255 - lut
    return lut


def _has_voi_lut(ds: Dataset) -> bool:
    sequence = ds.get("VOILUTSequence")
    return bool(sequence) and "LUTDescriptor" in sequence[0] and "LUTData" in sequence[0]


def _has_window(ds: Dataset) -> bool:
    return ds.get("WindowCenter") is not None and ds.get("WindowWidth") is not None


def _modality_output_range(ds: Dataset, low: int, high: int) -> tuple[float, float]:
    """The stored range through the Modality LUT, as pydicom's windowing takes it (PS3.3 C.11.1)."""
    sequence = ds.get("ModalityLUTSequence")
    if sequence:
        out_low, out_high = 0.0, float(2 ** int(sequence[0].LUTDescriptor[2]) - 1)
    else:
        out_low, out_high = float(low), float(high)
    if "RescaleSlope" in ds and "RescaleIntercept" in ds:
        slope, intercept = float(ds.RescaleSlope), float(ds.RescaleIntercept)
        out_low, out_high = out_low * slope + intercept, out_high * slope + intercept
    return min(out_low, out_high), max(out_low, out_high)
