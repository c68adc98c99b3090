"""Benchmark: serving's decode (``decode_image``, 128 px spec) of one full-resolution X-ray-sized image in
each format. Prints JSON.

    .venv/bin/python benchmarks/decode_bench.py [--runs 20] [--width 2000] [--height 2500]

The image is synthetic (no patient data): a smooth 12-bit MONOCHROME2 field with texture and noise, as
DICOM uncompressed, JPEG 2000 lossless, JPEG Lossless SV1 and RLE, as a 16-bit PNG, and, scaled to 8
bits, as a JPEG (quality 95) and an 8-bit PNG. Each is decoded ``--runs`` times after one warm-up; the
median and the fastest run are reported in milliseconds, with the file size. ``first_dicom_import_ms``
is the one-off cost of importing pydicom and python-gdcm, paid by the first DICOM a process decodes.
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from medimage.core.preprocess import PreprocessSpec  # noqa: E402
from medimage.inference.decode import decode_image  # noqa: E402


def _image_12bit(width: int, height: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    field = 2048 + 1200 * np.sin(x / width * 5.0) * np.cos(y / height * 3.0)
    field += 300 * np.sin(x / 17.0) * np.sin(y / 23.0) + rng.normal(0, 40, (height, width))
    return np.clip(np.rint(field), 0, 4095).astype(np.uint16)


def _files(width: int, height: int) -> dict[str, bytes]:
    from pydicom.uid import JPEG2000Lossless, RLELossless

    from tests.dicom_factory import make_dicom, transcode_with_gdcm

    values = _image_12bit(width, height)
    eight = np.rint(values.astype(np.float64) * 255 / 4095).astype(np.uint8)
    native = make_dicom(values, bits_stored=12)
    files = {
        "jpeg_q95_8bit": _pillow(eight, "JPEG", quality=95),
        "png_8bit": _pillow(eight, "PNG"),
        "png_16bit_12bit_values": _pillow(values, "PNG"),
        "dicom_uncompressed_12bit": native,
        "dicom_jpeg2000_lossless_12bit": make_dicom(values, bits_stored=12, transfer_syntax=JPEG2000Lossless),
        "dicom_jpeg_lossless_sv1_12bit": transcode_with_gdcm(native, "1.2.840.10008.1.2.4.70"),
        "dicom_rle_12bit": make_dicom(values, bits_stored=12, transfer_syntax=RLELossless),
    }
    return files


def _pillow(array: np.ndarray, fmt: str, **options: Any) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, format=fmt, **options)
    return out.getvalue()


def _time(data: bytes, spec: PreprocessSpec, runs: int) -> dict[str, float]:
    decode_image(data, spec)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        decode_image(data, spec)
        times.append((time.perf_counter() - start) * 1000)
    return {"median_ms": round(statistics.median(times), 2), "min_ms": round(min(times), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--width", type=int, default=2000)
    parser.add_argument("--height", type=int, default=2500)
    args = parser.parse_args()
    start = time.perf_counter()
    import medimage.core.dicom  # noqa: F401  (the lazy import the first DICOM pays)

    import_ms = round((time.perf_counter() - start) * 1000, 1)
    spec = PreprocessSpec(image_size=128, channels=1)
    results = {
        name: {"bytes": len(data), **_time(data, spec, args.runs)}
        for name, data in _files(args.width, args.height).items()
    }
    print(
        json.dumps(
            {
                "benchmark": "decode_image",
                "image": f"{args.width}x{args.height}",
                "spec_px": spec.image_size,
                "runs": args.runs,
                "python": platform.python_version(),
                "first_dicom_import_ms": import_ms,
                "results": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
