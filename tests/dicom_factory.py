"""Small synthetic DICOM files for tests: no real patient data, only the made-up PHI the tests look for.

``make_dicom`` builds a single- or multi-frame grayscale file from a numpy array, uncompressed or in a
compressed transfer syntax (JPEG Baseline and JPEG 2000 encoded with Pillow, RLE with pydicom).
``clinical_copies`` re-encodes an 8-bit gray image as 16-bit PNG and three kinds of DICOM export.
"""

from __future__ import annotations

import io
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    JPEG2000,
    DigitalXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    RLELossless,
    generate_uid,
)

PATIENT_NAME = "DOE^JANE"
PATIENT_ID = "PID-12345"
BIRTH_DATE = "19610314"
ACCESSION = "ACC-987654"
PHI_VALUES = (PATIENT_NAME, "DOE", "JANE", PATIENT_ID, BIRTH_DATE, ACCESSION)


def make_dicom(
    pixels: np.ndarray,
    *,
    bits_stored: int = 8,
    photometric: str = "MONOCHROME2",
    window: tuple[float, float] | Sequence[tuple[float, float]] | None = None,
    slope: float = 1,
    intercept: float = 0,
    transfer_syntax: str = ExplicitVRLittleEndian,
    patient_name: str = PATIENT_NAME,
    patient_id: str = PATIENT_ID,
    modality: str = "DX",
    body_part: str = "CHEST",
    view_position: str = "PA",
    frames: int = 1,
    signed: bool = False,
    with_pixels: bool = True,
    jpeg_quality: int = 95,
    study_uid: str | None = "generate",
) -> bytes:
    """A DICOM file (preamble, DICM, meta header) holding ``pixels`` (HxW, or HxWx3 for RGB).

    ``window``: (center, width), or several of them (the decoder must use the first). Rescale Slope and
    Intercept are written whenever either differs from 1 and 0. ``frames`` > 1 repeats the image.
    ``study_uid``: the Study Instance UID ("generate": a new one; None: no study or series UIDs at all).
    """
    pixels = np.asarray(pixels)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DigitalXRayImageStorageForPresentation
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    if study_uid is not None:
        ds.StudyInstanceUID = generate_uid() if study_uid == "generate" else study_uid
        ds.SeriesInstanceUID = generate_uid()
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.PatientBirthDate = BIRTH_DATE
    ds.AccessionNumber = ACCESSION
    ds.Modality = modality
    ds.BodyPartExamined = body_part
    ds.ViewPosition = view_position
    ds.Rows, ds.Columns = int(pixels.shape[0]), int(pixels.shape[1])
    ds.SamplesPerPixel = 3 if pixels.ndim == 3 else 1
    if pixels.ndim == 3:
        ds.PlanarConfiguration = 0
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 8 if bits_stored <= 8 else 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 1 if signed else 0
    if slope != 1 or intercept != 0:
        ds.RescaleSlope = slope
        ds.RescaleIntercept = intercept
    if window is not None:
        windows = [window] if isinstance(window[0], int | float) else list(window)  # type: ignore[list-item]
        ds.WindowCenter = [float(c) for c, _ in windows] if len(windows) > 1 else float(windows[0][0])
        ds.WindowWidth = [float(w) for _, w in windows] if len(windows) > 1 else float(windows[0][1])
    if frames > 1:
        ds.NumberOfFrames = frames
    dtype = {(8, False): np.uint8, (16, False): np.uint16, (8, True): np.int8, (16, True): np.int16}
    stored = pixels.astype(dtype[(int(ds.BitsAllocated), signed)])
    if with_pixels:
        _set_pixels(ds, stored, frames, transfer_syntax, jpeg_quality)
    out = io.BytesIO()
    pydicom.dcmwrite(out, ds, enforce_file_format=True)
    return out.getvalue()


def _set_pixels(ds: Dataset, stored: np.ndarray, frames: int, syntax: str, quality: int) -> None:
    if syntax == RLELossless:
        ds.compress(RLELossless, stored, encoding_plugin="pydicom")
        return
    if syntax in (JPEGBaseline8Bit, JPEG2000, JPEG2000Lossless):
        ds.PixelData = encapsulate([_pillow_encode(stored, syntax, quality)] * frames)
        ds["PixelData"].VR = "OB"
        ds.file_meta.TransferSyntaxUID = syntax
        if syntax == JPEG2000:
            ds.LossyImageCompression = "01"
        return
    ds.PixelData = np.concatenate([stored.ravel()] * frames).tobytes()
    ds.file_meta.TransferSyntaxUID = syntax


def _pillow_encode(stored: np.ndarray, syntax: str, quality: int) -> bytes:
    out = io.BytesIO()
    image = Image.fromarray(stored)
    if syntax == JPEGBaseline8Bit:
        image.save(out, format="JPEG", quality=quality)
    else:
        # A bare codestream (no JP2 box), as DICOM encapsulates it; lossless unless JPEG2000 lossy.
        lossy = syntax == JPEG2000
        options = {"quality_mode": "rates", "quality_layers": [10]} if lossy else {}
        image.save(out, format="JPEG2000", no_jp2=True, irreversible=lossy, **options)
    return out.getvalue()


def transcode_with_gdcm(data: bytes, syntax: str) -> bytes:
    """Re-encode a file with GDCM, for the syntaxes neither Pillow nor pydicom encodes (JPEG Lossless,
    JPEG-LS). GDCM's writer takes file names, hence the temporary folder."""
    import gdcm

    uids = {
        "1.2.840.10008.1.2.4.70": gdcm.TransferSyntax.JPEGLosslessProcess14_1,
        "1.2.840.10008.1.2.4.80": gdcm.TransferSyntax.JPEGLSLossless,
    }
    with tempfile.TemporaryDirectory() as folder:
        source, target = Path(folder, "in.dcm"), Path(folder, "out.dcm")
        source.write_bytes(data)
        reader = gdcm.ImageReader()
        reader.SetFileName(str(source))
        assert reader.Read()
        change = gdcm.ImageChangeTransferSyntax()
        change.SetTransferSyntax(gdcm.TransferSyntax(uids[syntax]))
        change.SetInput(reader.GetImage())
        assert change.Change()
        writer = gdcm.ImageWriter()
        writer.SetFileName(str(target))
        writer.SetFile(reader.GetFile())
        writer.SetImage(change.GetOutput())
        assert writer.Write()
        return target.read_bytes()


def reference_image(height: int = 48, width: int = 64, seed: int = 0) -> np.ndarray:
    """An 8-bit gray test pattern with the whole 0..255 range: ramps, a bright disc, some noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    ramp = (x * 255.0 / (width - 1)) * 0.7 + (y * 255.0 / (height - 1)) * 0.3
    disc = ((y - height / 2) ** 2 + (x - width / 3) ** 2) < (min(height, width) / 5) ** 2
    image = np.where(disc, 255.0, ramp) + rng.normal(0, 6, (height, width))
    image[0, 0], image[-1, -1] = 0, 255
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def smooth_image(height: int = 48, width: int = 64) -> np.ndarray:
    """An 8-bit gray image without noise, so lossy codecs stay within a few levels of it."""
    y, x = np.mgrid[0:height, 0:width]
    image = 127.5 + 110 * np.sin(x / width * 3.0) * np.cos(y / height * 2.0) + 15 * (x / width)
    image[0, 0], image[-1, -1] = 0, 255
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def clinical_copies(gray8: np.ndarray) -> dict[str, tuple[str, bytes]]:
    """The same 8-bit gray pixels as a clinical system would export them, name -> (suffix, bytes).

    Each copy decodes back onto ``gray8`` (exactly, or within JPEG quality-95 loss for
    ``dicom_jpeg_baseline``), so a model must label every copy as it labels the 8-bit original.
    """
    gray8 = np.asarray(gray8, dtype=np.uint8)
    if gray8.ndim != 2:
        raise ValueError(f"expected an HxW 8-bit gray image, got shape {gray8.shape}")
    png16 = io.BytesIO()
    # v * 257 spans the whole 16-bit range, as a 16-bit export of 8-bit values does (uint16: mode "I;16").
    Image.fromarray(gray8.astype(np.uint16) * 257).save(png16, format="PNG")
    # The LINEAR VOI window (2048.5, 2041) maps 8 * (255 - v) + 1028 onto 255 - v; MONOCHROME1 inverts it.
    stored12 = 8 * (255 - gray8.astype(np.uint16)) + 1028
    return {
        "png16": (".png", png16.getvalue()),
        "dicom_mono2_8bit": (".dcm", make_dicom(gray8)),
        "dicom_mono1_12bit_window": (
            ".dcm",
            make_dicom(stored12, bits_stored=12, photometric="MONOCHROME1", window=(2048.5, 2041)),
        ),
        "dicom_jpeg_baseline": (".dcm", make_dicom(gray8, transfer_syntax=JPEGBaseline8Bit, jpeg_quality=95)),
    }
