"""The JPEG file class uploads open through: Pillow's own, except that EXIF stays bytes on open.

Pillow's JPEG plugin parses an EXIF block on open for one thing, a DPI when the JFIF header has none.
Nothing here reads a DPI (pixels are resized to the model's input), and that parse imports the TIFF plugin
with ``fractions`` and ``decimal`` (about 6 ms of a serving cold start for every X-ray that carries EXIF)
and runs a TIFF parser over the untrusted bytes of each upload. The EXIF bytes stay in ``info["exif"]``;
``getexif()`` still parses them for a caller that asks. Decoding is Pillow's, unchanged.
"""

from __future__ import annotations

from PIL.JpegImagePlugin import JpegImageFile


class JpegUpload(JpegImageFile):
    def _read_dpi_from_exif(self) -> None:
        return None
