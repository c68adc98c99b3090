"""Image validation: every kind of bad upload gets its own code; good ones are described exactly."""

from __future__ import annotations

import io
import zlib

import numpy as np
import pytest
from PIL import Image

from medimage.core.decoding import inspect_image
from medimage.core.errors import RejectedInput
from medimage.core.images import ImageLimits, check_size
from medimage.local.synthetic import BAD_FILE_CODES, bad_files, encode, render
from tests.dicom_factory import make_dicom, reference_image


def jpeg(size=(64, 48), mode="L", exif: Image.Exif | None = None) -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, 128).save(out, format="JPEG", **({"exif": exif} if exif is not None else {}))
    return out.getvalue()


def camera_exif() -> Image.Exif:
    """EXIF as a scanner or camera writes it: a resolution, an orientation, a free-text make."""
    exif = Image.Exif()
    exif[0x010F] = "ACME Imaging"  # Make
    exif[0x0112] = 1  # Orientation
    exif[0x011A] = 300.0  # XResolution
    exif[0x011B] = 300.0  # YResolution
    exif[0x0128] = 2  # ResolutionUnit: inch
    return exif


def png(size=(64, 48), mode="RGB") -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, (10, 20, 30) if mode == "RGB" else 10).save(out, format="PNG")
    return out.getvalue()


def test_a_valid_jpeg_is_described():
    data = jpeg((64, 48))
    info = inspect_image(data)
    assert (info.format, info.width, info.height, info.mode, info.size_bytes) == (
        "jpeg",
        64,
        48,
        "L",
        len(data),
    )
    assert len(info.sha256) == 64


def test_a_valid_png_is_described():
    info = inspect_image(png((40, 30)))
    assert (info.format, info.width, info.height, info.mode) == ("png", 40, 30, "RGB")
    assert info.dicom is None


def test_a_valid_dicom_is_described_with_its_header_fields():
    data = make_dicom(reference_image(30, 40).astype(np.uint16) * 16, bits_stored=12, view_position="AP")
    info = inspect_image(data)
    assert (info.format, info.width, info.height, info.mode, info.size_bytes) == (
        "dicom",
        40,
        30,
        "L",
        len(data),
    )
    assert info.dicom is not None
    assert (info.dicom.modality, info.dicom.body_part, info.dicom.view_position) == ("DX", "CHEST", "AP")
    assert (info.dicom.photometric, info.dicom.bits_stored) == ("MONOCHROME2", 12)
    assert info.dicom.transfer_syntax == "1.2.840.10008.1.2.1"


@pytest.mark.parametrize(
    ("name", "code"),
    sorted(BAD_FILE_CODES.items()),
)
def test_bad_files_are_rejected_with_their_code(name, code):
    with pytest.raises(RejectedInput) as err:
        inspect_image(bad_files()[name])
    assert err.value.code == code
    assert err.value.message
    if code == "not_an_image":
        assert "not a JPEG, PNG or DICOM file" in err.value.message


def test_extension_is_not_trusted_a_gif_is_not_accepted():
    out = io.BytesIO()
    Image.new("L", (32, 32)).save(out, format="GIF")
    with pytest.raises(RejectedInput) as err:
        inspect_image(out.getvalue())
    assert err.value.code == "not_an_image"


def test_too_many_bytes_is_refused_before_decoding():
    with pytest.raises(RejectedInput) as err:
        check_size(31 * 1024 * 1024)
    assert err.value.code == "too_large"
    with pytest.raises(RejectedInput):
        inspect_image(jpeg(), ImageLimits(max_bytes=100))


def test_decompression_bomb_is_refused_from_its_header():
    # GIVEN a tiny PNG that declares 20000x20000 pixels (a few hundred bytes on disk)
    width = height = 20000
    raw = zlib.compress(b"".join(b"\x00" + b"\x00" * width for _ in range(10)))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")

    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])
    bomb = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")
    # WHEN it is inspected THEN it is refused by pixel count, not decoded
    with pytest.raises(RejectedInput) as err:
        inspect_image(bomb)
    assert err.value.code == "too_many_pixels"


def test_tiny_images_are_refused():
    with pytest.raises(RejectedInput) as err:
        inspect_image(jpeg((8, 8)))
    assert err.value.code == "too_small"


def test_synthetic_images_are_valid_and_differ_by_class():
    rng = np.random.default_rng(0)
    a, b = render(0, 32, rng), render(1, 32, rng)
    assert inspect_image(encode(a)).width == 32
    assert inspect_image(encode(b, "png")).format == "png"
    assert not np.array_equal(a, b)


def test_every_synthetic_bad_file_has_its_expected_code():
    from medimage.local.synthetic import bad_files

    assert set(bad_files()) == set(BAD_FILE_CODES)


def test_without_limits_pillows_own_pixel_ceiling_still_refuses_a_bomb(monkeypatch):
    from medimage.core.images import open_image

    # GIVEN Pillow's ceiling lowered under a 64x48 image; the trainer's path passes no limits of its own
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(RejectedInput) as err:
        open_image(jpeg((64, 48)), limits=None)
    assert err.value.code == "too_many_pixels"
    assert "64x48" in err.value.message


def test_a_jpeg_whose_header_is_garbage_is_unreadable():
    data = jpeg((64, 48))
    broken = data[:3] + b"\x00" * 200 + data[203:]
    with pytest.raises(RejectedInput) as err:
        inspect_image(broken)
    assert err.value.code in {"unreadable", "truncated"}
    assert err.value.message


def test_opening_an_upload_imports_only_the_plugin_of_its_format(tmp_path):
    """Format probing (``Image.open``) imports every common plugin; the magic bytes already named one."""
    import json
    import subprocess
    import sys

    # GIVEN a JPEG with EXIF and a PNG made here (saving imports plugins too, so not in the process under
    # test)
    (tmp_path / "a.jpeg").write_bytes(jpeg((64, 48), exif=camera_exif()))
    (tmp_path / "b.png").write_bytes(png((64, 48), mode="L"))
    script = (
        "import json, sys\n"
        "from medimage.core.decoding import decode_to_gray_or_rgb\n"
        "def plugins():\n"
        "    return sorted(m for m in sys.modules if m.startswith('PIL.') and m.endswith('Plugin'))\n"
        f"decode_to_gray_or_rgb(open({str(tmp_path / 'a.jpeg')!r}, 'rb').read(), mode='L', draft_size=32)\n"
        "after_jpeg = plugins()\n"
        f"decode_to_gray_or_rgb(open({str(tmp_path / 'b.png')!r}, 'rb').read(), mode='L')\n"
        "print(json.dumps([after_jpeg, plugins()]))\n"
    )
    # WHEN a fresh process decodes the JPEG, then the PNG
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    after_jpeg, after_png = json.loads(done.stdout.splitlines()[-1])
    # THEN each brings in its own plugin and no other: the JPEG's EXIF is not parsed, so not the TIFF one
    assert after_jpeg == ["PIL.JpegImagePlugin"]
    assert set(after_png) - set(after_jpeg) == {"PIL.PngImagePlugin"}
    assert not {"PIL.GifImagePlugin", "PIL.BmpImagePlugin", "PIL.PpmImagePlugin"} & set(after_png)


def test_a_jpeg_with_exif_decodes_to_the_pixels_pillow_gives_and_keeps_its_exif_bytes():
    """EXIF is not parsed on open (nothing reads its DPI); the pixels are Pillow's and the bytes stay."""
    from medimage.core.decoding import decode_to_gray_or_rgb
    from medimage.core.images import open_image

    # GIVEN a JPEG whose EXIF carries a resolution, with gradient pixels
    out = io.BytesIO()
    Image.fromarray(np.tile(np.arange(96, dtype=np.uint8), (80, 1))).save(
        out, format="JPEG", exif=camera_exif()
    )
    data = out.getvalue()
    # WHEN it is opened and decoded as uploads are
    image, fmt = open_image(data)
    decoded = decode_to_gray_or_rgb(data, mode="L")
    # THEN the pixels are those of Image.open, the EXIF bytes are kept and still parse on request
    assert fmt == "jpeg" and image.format == "JPEG"
    np.testing.assert_array_equal(
        np.asarray(decoded.image), np.asarray(Image.open(io.BytesIO(data)).convert("L"))
    )
    assert image.info["exif"] == Image.open(io.BytesIO(data)).info["exif"]
    assert image.getexif()[0x010F] == "ACME Imaging"
