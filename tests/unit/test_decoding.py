"""The one decoder: every PNG flavour and every DICOM encoding gives the array its 8-bit source gives.

Tolerances: lossless encodings (PNG, 16-bit copies with sBIT or ``* 257``, DICOM native, RLE, JPEG
Lossless, JPEG-LS, JPEG 2000 lossless) within +-1 level (the rounding of a rescale), exact where the
arithmetic is exact. Lossy encodings (JPEG Baseline, JPEG 2000) are compared with the same codestream
decoded as a plain file (+-1), and with the source within the codec's loss (mean under 4 levels).
"""

from __future__ import annotations

import io
import logging
import struct
import zlib

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.uid import JPEG2000, JPEG2000Lossless, JPEGBaseline8Bit, RLELossless

from medimage.core.decoding import decode_to_gray_or_rgb, inspect_image, scale_16bit
from medimage.core.errors import RejectedInput
from medimage.core.images import ImageLimits
from medimage.core.preprocess import PreprocessSpec, load_image_array
from medimage.inference.decode import decode_image
from tests.dicom_factory import (
    PATIENT_ID,
    PHI_VALUES,
    _pillow_encode,
    make_dicom,
    reference_image,
    smooth_image,
    transcode_with_gdcm,
)

REF = reference_image()
REF_RGB = np.stack([REF, np.flipud(REF), np.fliplr(REF)], axis=2)
REF_12 = np.rint(REF.astype(np.float64) * 4095 / 255).astype(np.uint16)


def gray(data: bytes, mode: str | None = None) -> np.ndarray:
    return np.asarray(decode_to_gray_or_rgb(data, mode=mode).image).astype(np.int64)


def assert_close(actual: np.ndarray, expected: np.ndarray, tolerance: int = 1) -> None:
    assert actual.shape == expected.shape
    assert np.abs(actual.astype(np.int64) - expected.astype(np.int64)).max() <= tolerance


def png8(array: np.ndarray, mode: str | None = None) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).convert(mode or Image.fromarray(array).mode).save(out, format="PNG")
    return out.getvalue()


def png16(values: np.ndarray, sbit: tuple[int, ...] | None = None, alpha: bool = False) -> bytes:
    """A 16-bit PNG written by hand (Pillow writes 16-bit gray only): gray, gray+alpha, RGB or RGBA."""
    values = values.astype(np.uint16)
    channels = 1 if values.ndim == 2 else values.shape[2]
    if alpha:
        opaque = np.full((*values.shape[:2], 1), 65535, np.uint16)
        values = np.concatenate([values.reshape(*values.shape[:2], channels), opaque], axis=2)
    colour_type = {(1, False): 0, (1, True): 4, (3, False): 2, (3, True): 6}[(channels, alpha)]
    height, width = values.shape[:2]
    rows = values.reshape(height, -1).astype(">u2")
    raw = b"".join(b"\x00" + row.tobytes() for row in rows)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0)
    body = chunk(b"IHDR", header) + (chunk(b"sBIT", bytes(sbit)) if sbit else b"")
    return b"\x89PNG\r\n\x1a\n" + body + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


COPIES = {"times257": lambda v: v.astype(np.uint16) * 257, "shift8": lambda v: v.astype(np.uint16) << 8}


# ---------------------------------------------------------------- PNG


@pytest.mark.parametrize("copy", sorted(COPIES))
@pytest.mark.parametrize("sbit", [None, 8])
def test_16bit_gray_png_equals_its_8bit_source(copy, sbit):
    data = png16(COPIES[copy](REF), sbit=(sbit,) if sbit else None)
    decoded = gray(data)
    assert_close(decoded, gray(png8(REF)))
    if sbit or copy == "times257":
        np.testing.assert_array_equal(decoded, REF)


@pytest.mark.parametrize("copy", sorted(COPIES))
@pytest.mark.parametrize("sbit", [None, 8])
@pytest.mark.parametrize("alpha", [False, True])
def test_16bit_rgb_and_rgba_png_equal_their_8bit_source(copy, sbit, alpha):
    data = png16(COPIES[copy](REF_RGB), sbit=(sbit,) * 3 if sbit else None, alpha=alpha)
    source = png8(REF_RGB)
    assert_close(gray(data), gray(source, "RGB"))
    assert_close(gray(data, "L"), gray(source, "L"))
    assert inspect_image(data).mode == ("RGBA;16" if alpha else "RGB;16")


@pytest.mark.parametrize("copy", sorted(COPIES))
def test_16bit_gray_alpha_png_equals_its_8bit_source(copy):
    data = png16(COPIES[copy](REF), alpha=True)
    assert_close(gray(data), REF)
    assert inspect_image(data).mode == "LA;16"


def test_16bit_png_is_scaled_not_clipped():
    # Pillow's convert("L") would clip 128 * 257 to 255: the model would see a white image.
    assert gray(png16(np.full((32, 32), 128 * 257)))[0, 0] == 128


def test_low_aligned_12bit_png_is_scaled_by_its_range_and_sbit_takes_the_high_bits():
    assert_close(gray(png16(REF_12)), REF)
    assert_close(gray(png16(REF_12 << 4, sbit=(12,))), REF)


def test_a_dark_16bit_copy_reads_one_bit_shallower_the_documented_cost():
    dark = (REF // 2).astype(np.uint16)  # never reaches 128: its 16-bit copy stays below 2**15
    assert_close(gray(png16(dark * 257)), np.clip(dark.astype(np.int64) * 2, 0, 255), tolerance=2)
    assert_close(gray(png16(dark * 257, sbit=(8,))), dark)


def test_scale_16bit_takes_per_channel_significant_bits():
    values = np.array([[[4095 << 4, 255 << 8, 31 << 11]]], dtype=np.uint16)
    assert scale_16bit(values, (12, 8, 5)).tolist() == [[[255, 255, 255]]]


@pytest.mark.parametrize("mode", ["LA", "P", "RGBA", "L", "RGB"])
def test_8bit_png_modes_equal_their_source(mode):
    if mode == "P":
        palette = Image.fromarray(REF).convert("P")  # Pillow's gray palette: index i is (i, i, i)
        palette.putpalette([v for i in range(256) for v in (i, i, i)])
        palette.putdata(REF.ravel().tolist())
        out = io.BytesIO()
        palette.save(out, format="PNG")
        data, expected = out.getvalue(), np.stack([REF] * 3, axis=2)
    elif mode in ("LA", "L"):
        data, expected = png8(REF, mode), REF
    else:
        data, expected = png8(REF_RGB, mode), REF_RGB
    assert_close(gray(data), expected, tolerance=0)
    assert_close(gray(data, "L"), np.asarray(Image.fromarray(expected).convert("L")), tolerance=0)


# ---------------------------------------------------------------- DICOM


def test_dicom_monochrome2_8bit_is_its_stored_values():
    np.testing.assert_array_equal(gray(make_dicom(REF)), REF)


def test_dicom_12bit_without_window_is_scaled_by_bits_stored():
    assert_close(gray(make_dicom(REF_12, bits_stored=12)), REF)


def test_dicom_monochrome1_12bit_window_then_inversion():
    # LINEAR window (PS3.3 C.11.2.1.2.1): center 2048.5, width 2041 -> y = (x - 1028) / 2040 * 255,
    # so x = 8 * (255 - ref) + 1028 gives 255 - ref exactly, and MONOCHROME1 inverts it back to ref.
    stored = 8 * (255 - REF.astype(np.uint16)) + 1028
    data = make_dicom(stored, bits_stored=12, photometric="MONOCHROME1", window=(2048.5, 2041))
    np.testing.assert_array_equal(gray(data), REF)
    # Outside the window: clipped, then inverted (0 is below it: black before inversion, white after).
    clipped = make_dicom(
        np.array([[0, 4095] * 8] * 16), bits_stored=12, photometric="MONOCHROME1", window=(2048.5, 2041)
    )
    assert gray(clipped)[0, :2].tolist() == [255, 0]


def test_dicom_first_window_of_several_is_used():
    stored = 8 * REF.astype(np.uint16) + 1028
    data = make_dicom(stored, bits_stored=12, window=[(2048.5, 2041), (300, 40)])
    np.testing.assert_array_equal(gray(data), REF)


def test_dicom_rescale_slope_intercept_comes_before_the_window():
    # Rescaled u = 2x - 1024; the window (1000.5, 1021) maps u = 4 * ref + 490 onto ref: x = 2 * ref + 757.
    stored = 2 * REF.astype(np.uint16) + 757
    data = make_dicom(stored, bits_stored=12, slope=2, intercept=-1024, window=(1000.5, 1021))
    np.testing.assert_array_equal(gray(data), REF)


def test_dicom_signed_16bit_without_window_spans_its_stored_range():
    stored = np.rint(REF.astype(np.float64) * 65535 / 255 - 32768).astype(np.int16)
    assert_close(gray(make_dicom(stored, bits_stored=16, signed=True)), REF)


@pytest.mark.parametrize(
    "syntax", [RLELossless, JPEG2000Lossless, "1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.80"]
)
@pytest.mark.parametrize("bits", [8, 12])
def test_dicom_lossless_encodings_equal_the_native_image(syntax, bits):
    stored = REF if bits == 8 else REF_12
    if syntax.startswith("1.2.840.10008.1.2.4.") and syntax != JPEG2000Lossless:
        data = transcode_with_gdcm(make_dicom(stored, bits_stored=bits), syntax)
    else:
        data = make_dicom(stored, bits_stored=bits, transfer_syntax=syntax)
    assert pydicom.dcmread(io.BytesIO(data)).file_meta.TransferSyntaxUID == syntax
    assert_close(gray(data), REF)


@pytest.mark.parametrize("syntax", [JPEGBaseline8Bit, JPEG2000])
def test_dicom_lossy_encodings_equal_the_same_codestream_as_a_plain_file(syntax):
    source = smooth_image()
    codestream = _pillow_encode(source, syntax, 95)
    decoded = gray(make_dicom(source, transfer_syntax=syntax))
    assert_close(decoded, np.asarray(Image.open(io.BytesIO(codestream)).convert("L")))
    assert np.abs(decoded - source.astype(np.int64)).mean() < 4


def test_dicom_decodes_to_rgb_for_a_three_channel_model():
    assert_close(gray(make_dicom(REF), "RGB"), np.stack([REF] * 3, axis=2), tolerance=0)


@pytest.mark.parametrize("channels", [1, 3])
def test_serving_and_training_decode_dicom_and_16bit_png_identically(channels):
    spec = PreprocessSpec(image_size=32, channels=channels)
    for data in (make_dicom(REF_12, bits_stored=12), png16(COPIES["shift8"](REF_RGB))):
        np.testing.assert_array_equal(decode_image(data, spec), load_image_array(data, spec))


# ---------------------------------------------------------------- rejections


REJECTIONS = {
    "dicom_multiframe": lambda: make_dicom(REF, frames=2),
    "dicom_no_pixels": lambda: make_dicom(REF, with_pixels=False),
    "dicom_unsupported": lambda: make_dicom(REF_RGB, photometric="RGB"),
}


@pytest.mark.parametrize("code", sorted(REJECTIONS))
def test_dicom_rejections_have_stable_codes(code):
    with pytest.raises(RejectedInput) as err:
        inspect_image(REJECTIONS[code]())
    assert err.value.code == code


@pytest.mark.parametrize("photometric", ["YBR_FULL", "PALETTE COLOR"])
def test_dicom_colour_interpretations_are_unsupported(photometric):
    with pytest.raises(RejectedInput) as err:
        inspect_image(make_dicom(REF, photometric=photometric))
    assert err.value.code == "dicom_unsupported"


@pytest.mark.parametrize("bits", [6, 17])
def test_dicom_bits_stored_outside_8_to_16_is_unsupported(bits):
    data = make_dicom(np.zeros((32, 32), np.uint8), bits_stored=min(bits, 16))
    ds = pydicom.dcmread(io.BytesIO(data))
    ds.BitsStored, ds.HighBit = bits, bits - 1
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    with pytest.raises(RejectedInput) as err:
        inspect_image(out.getvalue())
    assert err.value.code == "dicom_unsupported"


# High-Throughput JPEG 2000: pydicom knows it, no installed handler decodes it. MPEG2: pydicom has no decoder.
@pytest.mark.parametrize("syntax", ["1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.100"])
def test_dicom_transfer_syntax_without_a_handler_is_unsupported(syntax):
    data = make_dicom(REF, transfer_syntax=JPEG2000Lossless)
    ds = pydicom.dcmread(io.BytesIO(data))
    ds.file_meta.TransferSyntaxUID = syntax
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    with pytest.raises(RejectedInput) as err:
        inspect_image(out.getvalue())
    assert err.value.code == "dicom_unsupported"
    assert syntax in err.value.message


def _jpeg_dicom_with_garbage_in_its_codestream() -> bytes:
    codestream = _pillow_encode(REF, JPEGBaseline8Bit, 95)
    return make_dicom(REF, transfer_syntax=JPEGBaseline8Bit).replace(codestream[:64], b"\x00" * 64)


CORRUPTIONS = {
    "pixel_data_cut_short": lambda: make_dicom(REF)[:-200],
    "meta_header_of_garbage": lambda: make_dicom(REF)[:132] + b"\xff" * 64,
    "jpeg_codestream_of_garbage": _jpeg_dicom_with_garbage_in_its_codestream,
}


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_corrupt_dicom_is_unreadable(name):
    with pytest.raises(RejectedInput) as err:
        decode_to_gray_or_rgb(CORRUPTIONS[name]())
    assert err.value.code == "dicom_unreadable"


def test_dicom_pixel_limits_come_from_the_header_before_decoding():
    # A header declaring 20000x20000 over 2 KiB of pixel data: refused by its size, never decoded.
    ds = pydicom.dcmread(io.BytesIO(make_dicom(REF)))
    ds.Rows = ds.Columns = 20000
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    with pytest.raises(RejectedInput) as err:
        inspect_image(out.getvalue())
    assert err.value.code == "too_many_pixels"
    with pytest.raises(RejectedInput) as err:
        inspect_image(make_dicom(np.zeros((8, 64), np.uint8)))
    assert err.value.code == "too_small"
    with pytest.raises(RejectedInput) as err:
        inspect_image(make_dicom(REF), ImageLimits(max_bytes=1000))
    assert err.value.code == "too_large"


def test_dicom_without_preamble_and_magic_is_not_an_image():
    with pytest.raises(RejectedInput) as err:
        inspect_image(make_dicom(REF)[132:])
    assert err.value.code == "not_an_image"
    assert "not a JPEG, PNG or DICOM file" in err.value.message


# ---------------------------------------------------------------- PHI


def test_phi_never_reaches_logs_reprs_or_messages(caplog):
    pydicom.config.debug(True, default_handler=False)  # pydicom now logs every element it reads
    try:
        with caplog.at_level(logging.DEBUG):
            info = inspect_image(make_dicom(REF_12, bits_stored=12, window=(2048, 4096)))
            array = load_image_array(make_dicom(REF), PreprocessSpec(image_size=32))
            messages = []
            for code in sorted(REJECTIONS):
                with pytest.raises(RejectedInput) as err:
                    inspect_image(REJECTIONS[code]())
                messages.append(str(err.value))
    finally:
        pydicom.config.debug(False, default_handler=False)
    assert info.dicom is not None and info.dicom.patient_id == PATIENT_ID  # for the caller to hash
    assert (info.dicom.modality, info.dicom.body_part, info.dicom.view_position) == ("DX", "CHEST", "PA")
    traces = "\n".join([caplog.text, repr(info), str(info), repr(array), *messages])
    for value in PHI_VALUES:
        assert value not in traces


def test_free_text_in_a_rejected_header_field_is_not_quoted():
    with pytest.raises(RejectedInput) as err:
        inspect_image(make_dicom(REF, photometric="DOE^JANE"))
    assert err.value.code == "dicom_unsupported"
    assert "DOE" not in err.value.message
