"""Every coded concept the results use, in one table: the findings per class and the SR's own concepts.

Findings are SNOMED CT where a concept was checked against a SNOMED CT browser or the DICOM standard's
own tables (pydicom ships them). Where no concept was checked, or a class is one this table does not know
(a ``folders`` dataset's own class names), the finding is coded in the local scheme ``99MEDIMAGE``:
DICOM PS3.16 8.1 reserves designators beginning with ``99`` for private schemes, so a receiver sees the
code is local rather than misreads it. Map such a class to a checked concept here before clinical use.
"""

from __future__ import annotations

from dataclasses import dataclass

LOCAL_SCHEME = "99MEDIMAGE"
SNOMED = "SCT"
SNOMED_SYSTEM = "http://snomed.info/sct"  # FHIR's system URI for SCT
LOCAL_SYSTEM = "urn:medimage:codes"  # FHIR's system for the local scheme


@dataclass(frozen=True)
class Concept:
    """A code as DICOM (value, scheme designator, meaning) and FHIR (system URI) both need it."""

    value: str
    scheme: str
    meaning: str

    @property
    def fhir_system(self) -> str:
        return {SNOMED: SNOMED_SYSTEM, "DCM": "http://dicom.nema.org/resources/ontology/DCM"}.get(
            self.scheme, LOCAL_SYSTEM
        )


# Class name (case-insensitive) -> finding. Every class of the shipped presets is here.
FINDINGS: dict[str, Concept] = {
    # chestxray2017, chestxray2017-binary
    "normal": Concept("17621005", SNOMED, "Normal"),  # qualifier value; DICOM CID 222 and others
    "pneumonia": Concept("233604007", SNOMED, "Pneumonia"),
    "bacterial": Concept("53084003", SNOMED, "Bacterial pneumonia"),
    "viral": Concept("75570004", SNOMED, "Viral pneumonia"),
    # oct2017 (NORMAL is "normal" above)
    "dme": Concept("312912001", SNOMED, "Diabetic macular edema"),
    "drusen": Concept("247153005", SNOMED, "Retinal drusen"),
    # No SNOMED CT concept for choroidal neovascularization was checked: local until one is.
    "cnv": Concept("CNV", LOCAL_SCHEME, "Choroidal neovascularization"),
}

# The SR's concepts (DICOM PS3.16 DCM and SCT; the review items have no standard concept).
PROBABILITY = Concept("122157", "DCM", "Probability")
NO_UNITS = Concept("1", "UCUM", "no units")
IMAGING_PROCEDURE = Concept("363679005", SNOMED, "Imaging procedure")
DEVICE = Concept("121007", "DCM", "Device")
PERSON = Concept("121006", "DCM", "Person")
ALGORITHM_NAME = Concept("111001", "DCM", "Algorithm Name")
ALGORITHM_VERSION = Concept("111003", "DCM", "Algorithm Version")
ALGORITHM_PARAMETERS = Concept("111002", "DCM", "Algorithm Parameters")
YES = Concept("373066001", SNOMED, "Yes")
NO = Concept("373067005", SNOMED, "No")
REVIEW_NEEDED = Concept("REVIEW_NEEDED", LOCAL_SCHEME, "Clinician review needed")
REVIEW_REASON = Concept("REVIEW_REASON", LOCAL_SCHEME, "Reason for clinician review")
REVIEW_VERDICT = Concept("REVIEW_VERDICT", LOCAL_SCHEME, "Clinician verdict on the AI finding")
ACCEPTED = Concept("ACCEPTED", LOCAL_SCHEME, "AI finding accepted")
MODIFIED = Concept("MODIFIED", LOCAL_SCHEME, "AI finding modified")
# Why a prediction needs review (`medimage.inference.review_policy.REVIEW_REASONS`).
REVIEW_REASONS: dict[str, Concept] = {
    "foreign_image": Concept("FOREIGN_IMAGE", LOCAL_SCHEME, "Not the kind of image the model reads"),
    "outside_training_distribution": Concept(
        "OUT_OF_DIST", LOCAL_SCHEME, "Unlike the images the model was trained on"
    ),
    "low_confidence": Concept("LOW_CONFIDENCE", LOCAL_SCHEME, "Low confidence"),
}


def finding_concept(label: str) -> Concept:
    """The finding a class name stands for; a class this table lacks gets a local code of its name (DICOM
    caps a code value at 16 characters and a meaning at 64)."""
    known = FINDINGS.get(label.casefold())
    return known if known is not None else Concept(label[:16], LOCAL_SCHEME, label[:64])


def review_reason_concept(reason: str) -> Concept:
    known = REVIEW_REASONS.get(reason)
    return known if known is not None else Concept(reason[:16], LOCAL_SCHEME, reason[:64])
