"""Errors that carry a machine-readable code, so a rejection can be quarantined with its reason."""

from __future__ import annotations


class MedimageError(Exception):
    """Base error: `code` is stable and machine-readable, the message is for people."""

    code = "error"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        return str(self)

    def as_reason(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


class RejectedInput(MedimageError):
    """An uploaded object that cannot be accepted; it goes to quarantine with this reason."""

    code = "rejected"


class UnknownPreset(MedimageError):
    code = "unknown_preset"
