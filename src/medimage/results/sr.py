"""DICOM Structured Reports (highdicom): the AI's finding, and a clinician's verdict in an SR of its own.

Both are Comprehensive SR documents with a TID 1500 Measurement Report, in the source image's study: the
same Study Instance UID, the patient and study modules copied from the source, a new series. The AI's
report holds one TID 1501 group that references the classified image and carries

- the finding as a coded concept (`medimage.results.codes.FINDINGS`), as "Finding" (DCM 121071);
- its probability, as "Probability" (DCM 122157), unit "1" (UCUM no units);
- whether a clinician must review it and why (local codes: no standard concept exists);
- the algorithm (TID 4019: name, version = the model version, parameters = software version and the model
  file's SHA-256), as the IHE AI Results profile asks, and the device as the observer (TID 1004).

The verdict's report has the reviewer as a person observer, the clinician's finding and "accepted" or
"modified", and lists the AI's SR as evidence, so the AI's answer and the person's stay apart.

UIDs are derived from the classified object's identity (`AiFinding.source_uid`): a redelivered event
writes the same SR again, not a second one. Nothing here logs; header values are PHI and stay in the SR.
"""

from __future__ import annotations

import io
import uuid
import warnings
from copy import deepcopy
from dataclasses import dataclass
from datetime import datetime

import highdicom as hd
import pydicom
from pydicom.dataset import Dataset
from pydicom.sr.coding import Code

import medimage.core.dicom  # noqa: F401  (drops pydicom's log records, which can quote header values)
from medimage.results import codes
from medimage.results.codes import Concept
from medimage.results.finding import ALGORITHM_MANUFACTURER, AiFinding, Verdict

_UID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:medimage:results")
AI_SERIES_NUMBER = 9901
REVIEW_SERIES_NUMBER = 9902
# The source's Type 1 references an SR needs to be placed in its study and to point at the image.
REQUIRED_REFERENCES = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID")
# Type 2 attributes highdicom copies from the evidence: empty when the source lacks them.
_TYPE2_COPIED = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "AccessionNumber",
    "StudyID",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
)
# Patient module (PS3.3 C.7.1.1) and study attributes beyond those, copied as the source has them.
_COPIED_AS_IS = (
    "IssuerOfPatientID",
    "IssuerOfPatientIDQualifiersSequence",
    "TypeOfPatientID",
    "PatientBirthTime",
    "OtherPatientIDsSequence",
    "OtherPatientNames",
    "EthnicGroup",
    "PatientComments",
    "PatientSpeciesDescription",
    "PatientSpeciesCodeSequence",
    "ResponsiblePerson",
    "ResponsiblePersonRole",
    "ResponsibleOrganization",
    "PatientIdentityRemoved",
    "DeidentificationMethod",
    "DeidentificationMethodCodeSequence",
    "IssuerOfAccessionNumberSequence",
    "StudyDescription",
)


class NoStudyContext(Exception):
    """The source DICOM lacks a reference an SR needs (``missing``: the attribute's keyword)."""

    def __init__(self, missing: str) -> None:
        super().__init__(f"the source DICOM has no {missing}")
        self.missing = missing


def code(concept: Concept) -> Code:
    return Code(concept.value, concept.scheme, concept.meaning)


def derived_uid(*parts: str) -> str:
    """A ``2.25`` UID (PS3.5 B.2) from a name-based UUID of ``parts``: the same parts, the same UID."""
    return f"2.25.{uuid.uuid5(_UID_NAMESPACE, chr(31).join(parts)).int}"


def read_header(data: bytes) -> Dataset:
    """The source's header (no pixels), checked for the references an SR needs; `NoStudyContext` else.
    pydicom's warnings can quote header values, so they are silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        header = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    for keyword in REQUIRED_REFERENCES:
        if not str(header.get(keyword) or "").strip():
            raise NoStudyContext(keyword)
    return header


def _evidence(header: Dataset) -> Dataset:
    """The source header with the Type 2 attributes highdicom reads present (empty when missing)."""
    evidence = deepcopy(header)
    for keyword in _TYPE2_COPIED:
        if keyword not in evidence:
            setattr(evidence, keyword, None)
    return evidence


def _copy_patient_and_study(source: Dataset, sr: Dataset) -> None:
    for keyword in _COPIED_AS_IS:
        if keyword in source:
            sr[keyword] = deepcopy(source[keyword])


def _algorithm(finding: AiFinding) -> hd.sr.AlgorithmIdentification:
    return hd.sr.AlgorithmIdentification(
        name=finding.algorithm_name,
        version=finding.model_version,
        parameters=[f"software medimage {finding.software_version}", f"model sha256 {finding.model_sha256}"],
        manufacturer=ALGORITHM_MANUFACTURER,
    )


def _set_content_time(sr: Dataset, iso: str) -> None:
    """Content Date/Time: when the finding was made (highdicom writes the time of writing, which would
    make a rewritten SR differ from the first)."""
    moment = datetime.fromisoformat(iso)
    sr.ContentDate = moment.strftime("%Y%m%d")
    sr.ContentTime = moment.strftime("%H%M%S")


def _to_bytes(sr: Dataset) -> bytes:
    out = io.BytesIO()
    sr.save_as(out, enforce_file_format=True)
    return out.getvalue()


def ai_report(header: Dataset, finding: AiFinding) -> bytes:
    """The AI's SR for the image whose header is ``header`` (from `read_header`)."""
    device = hd.sr.ObserverContext(
        observer_type=code(codes.DEVICE),
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=derived_uid("medimage device", finding.dataset, finding.model_sha256),
            name=finding.algorithm_name,
            manufacturer_name=ALGORITHM_MANUFACTURER,
            model_name=f"{finding.dataset} {finding.model_version}"[:64],
        ),
    )
    evaluations = [
        hd.sr.QualitativeEvaluation(
            code(codes.REVIEW_NEEDED), code(codes.YES if finding.needs_review else codes.NO)
        ),
    ]
    if finding.needs_review and finding.review_reason:
        evaluations.append(
            hd.sr.QualitativeEvaluation(
                code(codes.REVIEW_REASON), code(codes.review_reason_concept(finding.review_reason))
            )
        )
    algorithm = _algorithm(finding)
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=derived_uid("medimage tracking", finding.source_uid), identifier="AI classification"
        ),
        finding_type=code(codes.finding_concept(finding.label)),
        algorithm_id=algorithm,
        source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(header)],
        qualitative_evaluations=evaluations,
        measurements=[
            hd.sr.Measurement(
                name=code(codes.PROBABILITY),
                value=round(float(finding.probability), 6),
                unit=code(codes.NO_UNITS),
                algorithm_id=algorithm,
            )
        ],
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=device),
        procedure_reported=code(codes.IMAGING_PROCEDURE),
        imaging_measurements=[group],
    )
    sr = hd.sr.ComprehensiveSR(
        evidence=[_evidence(header)],
        content=report,
        series_instance_uid=derived_uid("medimage ai series", finding.source_uid),
        series_number=AI_SERIES_NUMBER,
        sop_instance_uid=derived_uid("medimage ai sr", finding.source_uid),
        instance_number=1,
        manufacturer=ALGORITHM_MANUFACTURER,
        is_complete=True,
        series_description="AI result (medimage), not verified",
    )
    sr.SoftwareVersions = finding.software_version
    _set_content_time(sr, finding.predicted_at)
    _copy_patient_and_study(header, sr)
    return _to_bytes(sr)


def review_report(ai_sr: bytes, verdict: Verdict) -> bytes:
    """A clinician's verdict on the AI's SR ``ai_sr``: a new SR in the same study that lists it as
    evidence and references the image the AI classified."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        first = pydicom.dcmread(io.BytesIO(ai_sr))
    images = [
        item
        for series in first.get("CurrentRequestedProcedureEvidenceSequence", [])
        for item in _referenced_instances(series, first.StudyInstanceUID)
    ]
    person = hd.sr.ObserverContext(
        observer_type=code(codes.PERSON),
        observer_identifying_attributes=hd.sr.PersonObserverIdentifyingAttributes(
            name=_person_name(verdict.reviewer)
        ),
    )
    verdict_code = codes.ACCEPTED if verdict.accepted else codes.MODIFIED
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=derived_uid("medimage review tracking", first.SOPInstanceUID, verdict.reviewed_at),
            identifier="Clinician review of AI classification",
        ),
        finding_type=code(codes.finding_concept(verdict.label)),
        source_images=[
            hd.sr.SourceImageForMeasurementGroup(image.SOPClassUID, image.SOPInstanceUID) for image in images
        ],
        qualitative_evaluations=[hd.sr.QualitativeEvaluation(code(codes.REVIEW_VERDICT), code(verdict_code))],
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_person_context=person),
        procedure_reported=code(codes.IMAGING_PROCEDURE),
        imaging_measurements=[group],
    )
    sr = hd.sr.ComprehensiveSR(
        evidence=[first, *images],
        content=report,
        series_instance_uid=derived_uid("medimage review series", first.SOPInstanceUID),
        series_number=REVIEW_SERIES_NUMBER,
        sop_instance_uid=derived_uid("medimage review sr", first.SOPInstanceUID, verdict.reviewed_at),
        instance_number=1,
        manufacturer=ALGORITHM_MANUFACTURER,
        is_complete=True,
        series_description="Clinician review of AI result (medimage)",
    )
    _set_content_time(sr, verdict.reviewed_at)
    _copy_patient_and_study(first, sr)
    return _to_bytes(sr)


def _referenced_instances(series_item: Dataset, study_uid: str) -> list[Dataset]:
    """Stub datasets (the four references) of the instances an evidence item lists."""
    stubs = []
    for series in series_item.get("ReferencedSeriesSequence", []):
        for sop in series.get("ReferencedSOPSequence", []):
            stub = Dataset()
            stub.StudyInstanceUID = series_item.get("StudyInstanceUID", study_uid)
            stub.SeriesInstanceUID = series.SeriesInstanceUID
            stub.SOPClassUID = sop.ReferencedSOPClassUID
            stub.SOPInstanceUID = sop.ReferencedSOPInstanceUID
            stubs.append(stub)
    return stubs


def _person_name(reviewer: str) -> str:
    """A DICOM PN from what a person typed: at most 64 characters, no component separators of its own
    beyond the ones a PN allows ('^' stays, '=' and '\\' go)."""
    cleaned = "".join(ch for ch in reviewer.strip() if ch not in "=\\")
    return cleaned[:64] or "unknown"


# ---------------------------------------------------------------- reading back


@dataclass(frozen=True)
class ReportSummary:
    """What an SR of this module states, read back with highdicom."""

    study_uid: str
    sop_uid: str
    finding: Concept
    probability: float | None
    needs_review: bool | None
    review_reason: Concept | None
    verdict: Concept | None
    algorithm_name: str | None
    algorithm_version: str | None
    algorithm_parameters: tuple[str, ...]
    evidence_uids: tuple[str, ...]


def _concept(value: object) -> Concept:
    return Concept(str(value.value), str(value.scheme_designator), str(value.meaning))  # type: ignore[attr-defined]


def _texts(item: Dataset, concept: Concept) -> list[str]:
    """The TEXT values named ``concept`` anywhere below ``item`` (TID 4019 sits inside the group)."""
    found = []
    for child in item.get("ContentSequence", []):
        name = child.ConceptNameCodeSequence[0]
        if child.ValueType == "TEXT" and (name.CodeValue, name.CodingSchemeDesignator) == (
            concept.value,
            concept.scheme,
        ):
            found.append(str(child.TextValue))
        found.extend(_texts(child, concept))
    return found


def read_report(data: bytes) -> ReportSummary:
    """Parse an SR this module wrote (highdicom's `srread`), for tests and the review command."""
    sr = hd.sr.srread(io.BytesIO(data))
    group = sr.content.get_image_measurement_groups()[0]
    evaluations = {
        (q.name.value, q.name.scheme_designator): q.value for q in group.get_qualitative_evaluations()
    }
    measurements = group.get_measurements(name=code(codes.PROBABILITY))

    def evaluation(concept: Concept) -> Concept | None:
        value = evaluations.get((concept.value, concept.scheme))
        return _concept(value) if value is not None else None

    review = evaluation(codes.REVIEW_NEEDED)
    names = _texts(group[0], codes.ALGORITHM_NAME)
    versions = _texts(group[0], codes.ALGORITHM_VERSION)
    evidence = tuple(
        sop.ReferencedSOPInstanceUID
        for item in sr.get("CurrentRequestedProcedureEvidenceSequence", [])
        for series in item.ReferencedSeriesSequence
        for sop in series.ReferencedSOPSequence
    )
    if group.finding_type is None:
        raise ValueError("the SR states no finding")
    return ReportSummary(
        study_uid=str(sr.StudyInstanceUID),
        sop_uid=str(sr.SOPInstanceUID),
        finding=_concept(group.finding_type),
        probability=float(measurements[0].value) if measurements else None,
        needs_review=None if review is None else review == codes.YES,
        review_reason=evaluation(codes.REVIEW_REASON),
        verdict=evaluation(codes.REVIEW_VERDICT),
        algorithm_name=names[0] if names else None,
        algorithm_version=versions[0] if versions else None,
        algorithm_parameters=tuple(dict.fromkeys(_texts(group[0], codes.ALGORITHM_PARAMETERS))),
        evidence_uids=evidence,
    )
