"""What a result says, as plain values: the AI's finding and a clinician's verdict on it."""

from __future__ import annotations

from dataclasses import dataclass

ALGORITHM_MANUFACTURER = "medimage"


@dataclass(frozen=True)
class AiFinding:
    """One prediction, as the SR and the FHIR report state it.

    ``source_uid`` identifies the classified object (its S3 identity); every UID of the results is derived
    from it, so a redelivered event rewrites the same SR rather than adding a second one."""

    dataset: str
    label: str
    probability: float
    needs_review: bool
    review_reason: str | None
    model_version: str
    model_sha256: str
    software_version: str
    predicted_at: str  # ISO 8601 with offset
    source_uid: str

    @property
    def algorithm_name(self) -> str:
        return f"medimage {self.dataset} classifier"


@dataclass(frozen=True)
class Verdict:
    """A clinician's label for a reviewed prediction: ``accepted`` when it is the model's label."""

    label: str
    model_label: str
    reviewer: str
    reviewed_at: str  # ISO 8601 with offset

    @property
    def accepted(self) -> bool:
        return self.label.casefold() == self.model_label.casefold()
