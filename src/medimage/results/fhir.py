"""A FHIR R4 DiagnosticReport for one prediction, with the Observation and the model's Device contained.

Built as plain JSON and checked by ``fhir.resources``' R4B models before it is written: the package's
default models are FHIR R5 (5.0.0) and it ships no 4.0.1 module; R4B (4.3.0) changed nothing in
DiagnosticReport, Observation or Device that this report uses, so what passes R4B here is R4 as well
(docs/decisions.md). One file holds the whole report: the Observation and the Device are contained
resources, which a record system takes with the report in one POST.

- ``DiagnosticReport.imagingStudy`` and ``Observation.derivedFrom`` name the study by its Study Instance
  UID (identifier system ``urn:dicom:uid``); ``subject`` names the patient by the source's Patient ID
  (when it has one). Both only for a DICOM source: a PNG or JPEG carries neither, and its report has no
  subject.
- The Observation's code is the finding (`medimage.results.codes`), its value the probability (UCUM "1").
- Review: ``status`` is ``preliminary`` while a clinician must look (``final`` otherwise), and the
  Observation has a "review needed" component and, when there is one, the reason.
- The Device is the model: name, model version, software version, the model file's SHA-256.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from medimage.results import codes
from medimage.results.codes import Concept
from medimage.results.finding import ALGORITHM_MANUFACTURER, AiFinding

DICOM_UID_SYSTEM = "urn:dicom:uid"
UCUM = "http://unitsofmeasure.org"
LOINC = "http://loinc.org"
DIAGNOSTIC_IMAGING_STUDY = {"system": LOINC, "code": "18748-4", "display": "Diagnostic imaging study"}
IMAGING_CATEGORY = {
    "system": "http://terminology.hl7.org/CodeSystem/observation-category",
    "code": "imaging",
    "display": "Imaging",
}
MODEL_HASH_SYSTEM = "urn:medimage:model-sha256"
RESULT_ID_SYSTEM = "urn:medimage:result"
_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:medimage:fhir")


@dataclass(frozen=True)
class StudyContext:
    """What a DICOM source says about where the result belongs (PHI: never logged)."""

    study_uid: str
    patient_id: str
    patient_id_issuer: str | None = None


def codeable(concept: Concept) -> dict[str, Any]:
    return {
        "coding": [{"system": concept.fhir_system, "code": concept.value, "display": concept.meaning}],
        "text": concept.meaning,
    }


def _study_reference(study: StudyContext) -> dict[str, Any]:
    return {
        "type": "ImagingStudy",
        "identifier": {"system": DICOM_UID_SYSTEM, "value": f"urn:oid:{study.study_uid}"},
    }


def _subject(study: StudyContext) -> dict[str, Any]:
    identifier: dict[str, Any] = {"value": study.patient_id}
    if study.patient_id_issuer:
        identifier["assigner"] = {"display": study.patient_id_issuer}
    return {"type": "Patient", "identifier": identifier}


def _device(finding: AiFinding) -> dict[str, Any]:
    return {
        "resourceType": "Device",
        "id": "model",
        "identifier": [{"system": MODEL_HASH_SYSTEM, "value": finding.model_sha256}],
        "manufacturer": ALGORITHM_MANUFACTURER,
        "deviceName": [{"name": finding.algorithm_name, "type": "model-name"}],
        "version": [
            {"type": {"text": "model version"}, "value": finding.model_version},
            {"type": {"text": "software version"}, "value": finding.software_version},
        ],
    }


def _observation(finding: AiFinding, status: str, study: StudyContext | None) -> dict[str, Any]:
    components: list[dict[str, Any]] = [
        {"code": codeable(codes.REVIEW_NEEDED), "valueBoolean": finding.needs_review}
    ]
    if finding.needs_review and finding.review_reason:
        components.append(
            {
                "code": codeable(codes.REVIEW_REASON),
                "valueCodeableConcept": codeable(codes.review_reason_concept(finding.review_reason)),
            }
        )
    observation: dict[str, Any] = {
        "resourceType": "Observation",
        "id": "finding",
        "status": status,
        "category": [{"coding": [IMAGING_CATEGORY]}],
        "code": codeable(codes.finding_concept(finding.label)),
        "effectiveDateTime": finding.predicted_at,
        "valueQuantity": {
            "value": round(float(finding.probability), 6),
            "unit": "probability",
            "system": UCUM,
            "code": "1",
        },
        "device": {"reference": "#model"},
        "component": components,
    }
    if study is not None:
        if study.patient_id:
            observation["subject"] = _subject(study)
        observation["derivedFrom"] = [_study_reference(study)]
    return observation


def diagnostic_report(finding: AiFinding, study: StudyContext | None) -> dict[str, Any]:
    """The report as FHIR JSON, validated against the R4B models (`validate`)."""
    status = "preliminary" if finding.needs_review else "final"
    concept = codes.finding_concept(finding.label)
    conclusion = f"{concept.meaning} (probability {finding.probability:.3f}, {finding.algorithm_name} "
    conclusion += f"{finding.model_version})"
    if finding.needs_review:
        conclusion += f"; needs clinician review: {finding.review_reason or 'unspecified'}"
    report: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "id": str(uuid.uuid5(_NAMESPACE, finding.source_uid)),
        "contained": [_observation(finding, status, study), _device(finding)],
        "identifier": [
            {"system": RESULT_ID_SYSTEM, "value": f"urn:uuid:{uuid.uuid5(_NAMESPACE, finding.source_uid)}"}
        ],
        "status": status,
        "category": [{"coding": [IMAGING_CATEGORY]}],
        "code": {"coding": [DIAGNOSTIC_IMAGING_STUDY]},
        "effectiveDateTime": finding.predicted_at,
        "issued": finding.predicted_at,
        "result": [{"reference": "#finding"}],
        "conclusion": conclusion,
        "conclusionCode": [codeable(concept)],
    }
    if study is not None:
        if study.patient_id:
            report["subject"] = _subject(study)
        report["imagingStudy"] = [_study_reference(study)]
    validate(report)
    return report


def validate(doc: dict[str, Any]) -> None:
    """Parse ``doc`` with fhir.resources' R4B model of its type (a ValueError subclass when invalid).
    Imported here: pydantic's models are built on first use, not for every prediction module import."""
    from fhir.resources.R4B import get_fhir_model_class

    get_fhir_model_class(doc["resourceType"]).model_validate_json(json.dumps(doc))
