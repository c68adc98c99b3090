"""DICOMweb STOW-RS (PS3.18 10.5) as plain values: the request body in, the Store Instances Response out.

No AWS and no pydicom here: parsing a multipart/related body (the standard library's MIME parser), the
rules of the response (which status, which failure reason for which of the project's error codes) and
the body a client sends (the pipeline's own STOW-RS push of an SR back to the PACS).

The response is DICOM JSON (PS3.18 F.2) with the Store Instances Response Module: ReferencedSOPSequence
(0008,1199) for each stored instance, FailedSOPSequence (0008,1198) with a FailureReason (0008,1197) for
each refused one. PS3.18 has no attribute for a reason a person can read, so each failed item also
carries the project's stable error code and message in a private block (creator ``MEDIMAGE``).
"""

from __future__ import annotations

import email.policy
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.parser import BytesParser
from typing import Any

DICOM_MEDIA_TYPE = "application/dicom"
DICOM_JSON_MEDIA_TYPE = "application/dicom+json"
MULTIPART_RELATED = "multipart/related"

# Failure Reason values of a Store Instances Response (PS3.18 10.5.3, the C-STORE statuses of PS3.4 B.2.3).
OUT_OF_RESOURCES = 0xA700
DATA_SET_DOES_NOT_MATCH_SOP_CLASS = 0xA900
CANNOT_UNDERSTAND = 0xC000
PROCESSING_FAILURE = 0x0110
SOP_CLASS_NOT_SUPPORTED = 0x0122
STUDY_INSTANCE_UID_MISMATCH = 0xC409

# The project's error codes (medimage.core.errors, the image checks) as Failure Reasons.
FAILURE_REASON_OF_CODE: dict[str, int] = {
    "too_large": OUT_OF_RESOURCES,
    "too_many_pixels": OUT_OF_RESOURCES,
    "empty": CANNOT_UNDERSTAND,
    "unsupported_media_type": CANNOT_UNDERSTAND,
    "bad_multipart": CANNOT_UNDERSTAND,
    "not_dicom": CANNOT_UNDERSTAND,
    "not_an_image": CANNOT_UNDERSTAND,
    "dicom_unreadable": CANNOT_UNDERSTAND,
    "dicom_no_pixels": DATA_SET_DOES_NOT_MATCH_SOP_CLASS,
    "too_small": DATA_SET_DOES_NOT_MATCH_SOP_CLASS,
    "dicom_multiframe": SOP_CLASS_NOT_SUPPORTED,
    "dicom_unsupported": SOP_CLASS_NOT_SUPPORTED,
    "dicom_wrong_modality": SOP_CLASS_NOT_SUPPORTED,
    "dicom_wrong_body_part": SOP_CLASS_NOT_SUPPORTED,
    "dicom_wrong_view": SOP_CLASS_NOT_SUPPORTED,
    "no_dataset": SOP_CLASS_NOT_SUPPORTED,
    "unknown_dataset": SOP_CLASS_NOT_SUPPORTED,
    "bad_dataset": SOP_CLASS_NOT_SUPPORTED,
    "study_mismatch": STUDY_INSTANCE_UID_MISMATCH,
}

# The private block of a failed item: the project's code and message (PS3.5 7.8.1 private data elements).
PRIVATE_CREATOR = "MEDIMAGE"
PRIVATE_CREATOR_TAG = "00110010"
PRIVATE_CODE_TAG = "00111001"
PRIVATE_MESSAGE_TAG = "00111002"

_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:medimage:stow")


class StowRequestError(Exception):
    """The whole request refused (no instance looked at): HTTP status, stable code, message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Part:
    """One body part of a STOW-RS request: its media type (lower case, no parameters) and bytes."""

    media_type: str
    data: bytes


@dataclass(frozen=True)
class InstanceOutcome:
    """What became of one part: stored (``retrieve_url`` set) or failed (``code``, ``message``).

    The UIDs are those of the instance's header, empty when the part could not be read as DICOM."""

    sop_class_uid: str
    sop_instance_uid: str
    stored: bool
    retrieve_url: str | None = None
    code: str | None = None
    message: str | None = None

    @property
    def failure_reason(self) -> int:
        return FAILURE_REASON_OF_CODE.get(self.code or "", PROCESSING_FAILURE)


def media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def parse_stow_body(content_type: str, body: bytes) -> list[Part]:
    """The parts of a ``multipart/related; type="application/dicom"`` body.

    A request of another media type, or whose ``type`` parameter is not ``application/dicom``, is a 415
    (PS3.18 10.5.3); a multipart body that does not parse or holds no part is a 400."""
    if media_type(content_type) != MULTIPART_RELATED:
        shown = media_type(content_type) or "none"
        raise StowRequestError(
            415,
            "unsupported_media_type",
            f'the body is {shown}; STOW-RS takes multipart/related; type="application/dicom"',
        )
    message = BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
    )
    declared = (message.get_param("type") or "").strip().lower()
    if declared and declared != DICOM_MEDIA_TYPE:
        raise StowRequestError(
            415,
            "unsupported_media_type",
            f'multipart/related of type "{declared}": this server stores type="application/dicom" only',
        )
    if not message.is_multipart() or message.defects:
        raise StowRequestError(400, "bad_multipart", "the multipart/related body does not parse (boundary?)")
    parts = [
        Part(part.get_content_type().lower(), part.get_payload(decode=True) or b"")
        for part in message.iter_parts()
    ]
    if not parts:
        raise StowRequestError(400, "bad_multipart", "the multipart/related body holds no part")
    return parts


def response_status(outcomes: Sequence[InstanceOutcome]) -> int:
    """200 when every instance was stored, 202 when some were, 409 when none was (PS3.18 10.5.3)."""
    stored = sum(1 for o in outcomes if o.stored)
    if stored == len(outcomes):
        return 200
    return 202 if stored else 409


def _uid(value: str) -> dict[str, Any]:
    return {"vr": "UI", "Value": [value]} if value else {"vr": "UI"}


def store_response(outcomes: Sequence[InstanceOutcome]) -> dict[str, Any]:
    """The Store Instances Response Module as DICOM JSON (sequences only where they have items)."""
    referenced = [
        {
            "00081150": _uid(o.sop_class_uid),
            "00081155": _uid(o.sop_instance_uid),
            "00081190": {"vr": "UR", "Value": [o.retrieve_url]} if o.retrieve_url else {"vr": "UR"},
        }
        for o in outcomes
        if o.stored
    ]
    failed = [
        {
            "00081150": _uid(o.sop_class_uid),
            "00081155": _uid(o.sop_instance_uid),
            "00081197": {"vr": "US", "Value": [o.failure_reason]},
            PRIVATE_CREATOR_TAG: {"vr": "LO", "Value": [PRIVATE_CREATOR]},
            PRIVATE_CODE_TAG: {"vr": "LO", "Value": [o.code or "error"]},
            PRIVATE_MESSAGE_TAG: {"vr": "LT", "Value": [o.message or ""]},
        }
        for o in outcomes
        if not o.stored
    ]
    doc: dict[str, Any] = {}
    if failed:
        doc["00081198"] = {"vr": "SQ", "Value": failed}
    if referenced:
        doc["00081199"] = {"vr": "SQ", "Value": referenced}
    return doc


def request_error_response(error: StowRequestError) -> dict[str, Any]:
    """A refused request as DICOM JSON: one FailedSOPSequence item without UIDs, carrying the reason."""
    failure = InstanceOutcome("", "", stored=False, code=error.code, message=error.message)
    return store_response([failure])


def instance_name(study_uid: str, series_uid: str, sop_instance_uid: str) -> str:
    """The file name of a stored instance: a name-based UUID of its UIDs, so the same instance sent twice
    lands on the same key, and no UID (which can identify a patient's study) appears in keys or logs."""
    name = uuid.uuid5(_NAMESPACE, "\x1f".join((study_uid, series_uid, sop_instance_uid)))
    return f"{name}.dcm"


def part_name(data: bytes) -> str:
    """The file name of a part that is not a readable DICOM: a name-based UUID of its bytes."""
    import hashlib

    return f"{uuid.uuid5(_NAMESPACE, hashlib.sha256(data).hexdigest())}.part"


# ---------------------------------------------------------------- the client side (push to a PACS)
@dataclass(frozen=True)
class HttpAnswer:
    status: int
    body: bytes = b""


class PacsUnreachable(Exception):
    """No HTTP answer: refused, timed out, name not found. The text names the kind, never a header."""


def multipart_related(instances: Sequence[bytes], boundary: str | None = None) -> tuple[str, bytes]:
    """(Content-Type, body) of a STOW-RS request carrying ``instances`` (PS3.18 8.6.1.2)."""
    boundary = boundary or f"medimage-{uuid.uuid4().hex}"
    chunks: list[bytes] = []
    for data in instances:
        chunks += [f"--{boundary}\r\nContent-Type: {DICOM_MEDIA_TYPE}\r\n\r\n".encode("ascii"), data, b"\r\n"]
    chunks.append(f"--{boundary}--\r\n".encode("ascii"))
    content_type = f'{MULTIPART_RELATED}; type="{DICOM_MEDIA_TYPE}"; boundary={boundary}'
    return content_type, b"".join(chunks)


def stow_url(base: str) -> str:
    """The STOW-RS target: ``base`` as configured when it already ends in ``/studies`` (or
    ``/studies/<uid>``), else ``base/studies``."""
    url = base.rstrip("/")
    if url.rsplit("/", 1)[-1] == "studies" or "/studies/" in url:
        return url
    return f"{url}/studies"


def header(headers: Mapping[str, str] | None, name: str) -> str:
    """A request header, whatever its case ("" when absent)."""
    for key, value in (headers or {}).items():
        if key.lower() == name.lower() and value:
            return value.strip()
    return ""
