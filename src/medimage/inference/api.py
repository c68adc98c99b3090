"""The HTTP contract of the inference API, independent of API Gateway and of any web framework.

`POST /predict` takes the image as the raw body (``image/jpeg``, ``image/png``, ``application/dicom``,
``application/octet-stream``: the bytes are sniffed, the type is never trusted), as JSON
``{"image": "<base64>", "dataset": "..."}``, or as ``multipart/form-data`` with one file part (what
``curl -F file=@scan.dcm`` and a browser form send; a ``dataset`` field may ride along); ``?dataset=``
works for all. ``?explain=true`` (or JSON ``"explain": true``) asks for the class-activation heatmap too.
Every way a client can get a request wrong maps to a 4xx `ApiError` with a stable code, never to a 500.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pybase64

from medimage.core.errors import MedimageError, RejectedInput
from medimage.inference.cache import ModelUnavailable, NoProductionModel
from medimage.inference.model import ModelError
from medimage.inference.settings import DEFAULT_MAX_REQUEST_BYTES

# Request content types API Gateway hands to the function base64-encoded (template.yaml BinaryMediaTypes;
# `medimage serve` applies the same list). JSON stays text.
BINARY_MEDIA_TYPES: tuple[str, ...] = (
    "image/jpeg",
    "image/png",
    "image/*",
    "application/dicom",
    "application/octet-stream",
    "multipart/form-data",
    "multipart/related",
)

# HTTP status of each machine-readable rejection code.
STATUS_OF_CODE: dict[str, int] = {
    "empty": 400,
    "bad_json": 400,
    "bad_base64": 400,
    "bad_multipart": 400,
    "too_many_files": 400,
    "missing_image": 400,
    "bad_dataset": 400,
    "bad_explain": 400,
    "unknown_dataset": 400,
    "truncated": 400,
    "unreadable": 400,
    "too_small": 400,
    "too_large": 413,
    "too_many_pixels": 413,
    "not_an_image": 415,
    "dicom_no_pixels": 400,
    "dicom_unreadable": 400,
    "dicom_multiframe": 415,
    "dicom_unsupported": 415,
    "not_found": 404,
    # The review worklist (medimage.inference.review_api).
    "no_identity": 401,
    "missing_field": 400,
    "unknown_label": 400,
    "bad_label": 400,
    "no_reviewer": 400,
    "not_in_review": 404,
    "copy_failed": 503,
    "no_model": 503,
    "model_unavailable": 503,
    "bad_model": 503,
}


@dataclass(frozen=True)
class ApiError(Exception):
    """A request the API refuses: the HTTP status, a stable code and a message for a person."""

    status: int
    code: str
    message: str

    def body(self) -> dict[str, Any]:
        return error_body(self.code, self.message)

    @classmethod
    def from_error(cls, exc: MedimageError) -> ApiError:
        """A core error as the API answers it; unknown codes of rejected input are still 4xx."""
        default = 400 if isinstance(exc, RejectedInput) else 503
        if isinstance(exc, NoProductionModel | ModelUnavailable | ModelError):
            default = 503
        return cls(STATUS_OF_CODE.get(exc.code, default), exc.code, exc.message)


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


@dataclass(frozen=True)
class PredictRequest:
    """A ``POST /predict`` body and query, checked: the image bytes, the dataset asked for, explain."""

    image: bytes
    dataset: str | None
    explain: bool = False


_TRUE = ("true", "1", "yes", "on", "")  # "": a bare ?explain, as API Gateway passes it
_FALSE = ("false", "0", "no", "off")


def parse_explain(value: str | bool | None) -> bool:
    """``?explain=`` (``true``/``false``, ``1``/``0``, ``yes``/``no``, ``on``/``off``; a bare ``?explain``
    is true) or a JSON boolean; anything else is a 400 ``bad_explain``."""
    if value is None or isinstance(value, bool):
        return bool(value)
    text = value.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ApiError(400, "bad_explain", f"explain={value!r}: expected true or false")


def _content_type(headers: Mapping[str, str] | None) -> str:
    for name, value in (headers or {}).items():
        if name.lower() == "content-type" and value:
            return value.strip()
    return ""


def _form_parts(content_type: str, raw: bytes) -> tuple[bytes, str | None]:
    """The one file part of a ``multipart/form-data`` body, and its ``dataset`` field if any (parsed with
    the standard library's MIME parser)."""
    import email.policy  # multipart requests only: the MIME parser is not part of every cold start
    from email.parser import BytesParser

    message = BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + raw
    )
    if not message.is_multipart() or message.defects:
        raise ApiError(400, "bad_multipart", "the multipart/form-data body cannot be parsed (boundary?)")
    files: list[bytes] = []
    dataset = None
    for part in message.iter_parts():
        payload = part.get_payload(decode=True) or b""
        if part.get_filename() is not None:
            files.append(payload)
        elif part.get_param("name", header="content-disposition") == "dataset":
            dataset = payload.decode("utf-8", errors="replace").strip() or None
    if not files:
        raise ApiError(
            400, "missing_image", "the form has no file part: send the image as e.g. -F file=@scan"
        )
    if len(files) > 1:
        raise ApiError(
            400, "too_many_files", f"the form has {len(files)} file parts; send one image per request"
        )
    return files[0], dataset


def decode_base64(text: str, what: str) -> bytes:
    if text.startswith("data:") and "," in text:  # a data URL as FileReader.readAsDataURL makes it
        text = text.split(",", 1)[1]
    try:
        # API Gateway's bodies carry no whitespace: decode them as they are, with pybase64's SIMD decoder
        # (0.02 ms for a 250 kB X-ray where the standard library's takes 0.4-0.8 ms, a third of a
        # prediction). It rejects anything but strict, padded base64.
        return pybase64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        pass
    try:  # a client's base64 may be wrapped in lines; the standard library says what is wrong with it
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ApiError(400, "bad_base64", f"{what} is not valid base64: {exc}") from None


def parse_predict_request(
    body: str | bytes | None,
    is_base64_encoded: bool = False,
    headers: Mapping[str, str] | None = None,
    query: Mapping[str, str] | None = None,
    max_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
) -> PredictRequest:
    """An API Gateway proxy body (and headers, query string) to the image bytes and dataset."""
    if body is None or len(body) == 0:
        raise ApiError(
            400, "empty", 'the request body is empty: send image bytes or JSON {"image": "<base64>"}'
        )
    if isinstance(body, bytes):
        raw = body
    elif is_base64_encoded:
        raw = decode_base64(body, "the base64-encoded request body")
    else:
        # Text body: API Gateway passed it through as UTF-8; an image never arrives this way intact.
        raw = body.encode("utf-8", errors="surrogateescape")
    dataset = (query or {}).get("dataset") or None
    explain = parse_explain((query or {}).get("explain"))
    content_type = _content_type(headers)
    media = content_type.split(";", 1)[0].strip().lower()
    if media == "multipart/form-data":
        image, form_dataset = _form_parts(content_type, raw)
        dataset = dataset or form_dataset
    elif media.endswith("json") or raw.lstrip()[:1] == b"{":
        if len(raw) > max_bytes * 4 // 3 + 4096:
            raise ApiError(
                413,
                "too_large",
                f"the JSON body is {len(raw)} bytes, over the limit for {max_bytes} bytes of image",
            )
        try:
            doc = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ApiError(400, "bad_json", f"the body is not valid JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise ApiError(400, "bad_json", 'the JSON body must be an object like {"image": "<base64>"}')
        image_field = doc.get("image")
        if not isinstance(image_field, str):
            raise ApiError(400, "missing_image", 'the JSON body needs "image": a base64-encoded image')
        image = decode_base64(image_field, '"image"')
        if "dataset" in doc and doc["dataset"] is not None:
            if not isinstance(doc["dataset"], str):
                raise ApiError(400, "bad_dataset", '"dataset" must be a string')
            dataset = doc["dataset"]
        if "explain" in doc and doc["explain"] is not None:
            if not isinstance(doc["explain"], bool):
                raise ApiError(400, "bad_explain", '"explain" must be true or false')
            explain = explain or doc["explain"]
    else:
        image = raw
    if not image:
        raise ApiError(400, "empty", "the image is empty (0 bytes)")
    if len(image) > max_bytes:
        raise ApiError(
            413, "too_large", f"the image is {len(image)} bytes, over the limit of {max_bytes} bytes"
        )
    return PredictRequest(image=image, dataset=dataset, explain=explain)


def raw_body(event: dict[str, Any]) -> bytes:
    """A REST proxy event's body as the client sent it (API Gateway base64-encodes binary media types)."""
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):
        return decode_base64(body, "the base64-encoded request body")
    return body.encode("utf-8", errors="surrogateescape")
