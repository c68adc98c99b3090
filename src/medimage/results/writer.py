"""Write the results of one prediction beside its JSON, through the data bucket's port.

- A DICOM source gets an SR (`medimage.results.sr`) at `layout.result_sr_key` and a FHIR report
  (`medimage.results.fhir`) at `layout.result_fhir_key` that names its study and patient.
- A DICOM without the references an SR needs (no Study/Series/SOP Instance UID) gets the FHIR report
  only, and the reason in ``sr_skipped``: an SR outside the image's study would file the result under
  no patient in a PACS.
- A PNG or JPEG gets the FHIR report only, without subject or study, for the same reason: it carries
  no patient or study to attach a DICOM object to (docs/CONTRACTS.md).

The returned dictionary goes into the result JSON as ``results``: keys only, never header values, so
the result JSON stays free of PHI.
"""

from __future__ import annotations

import json
from typing import Any

from medimage import __version__
from medimage.core.images import SNIFF_BYTES, sniff_format
from medimage.core.layout import result_fhir_key, result_sr_key
from medimage.results.fhir import StudyContext, diagnostic_report
from medimage.results.finding import AiFinding
from medimage.results.sr import NoStudyContext, ai_report, read_header
from medimage.services.ports import ObjectStore

DICOM_CONTENT_TYPE = "application/dicom"
FHIR_CONTENT_TYPE = "application/fhir+json"
NO_STUDY_CONTEXT = "dicom_no_study_context"
SR_FAILED = "sr_failed"


def finding_of(record: dict[str, Any], source_uid: str) -> AiFinding:
    """The finding a drop-to-label result record states."""
    label = str(record["label"])
    return AiFinding(
        dataset=str(record["dataset"]),
        label=label,
        probability=float(record["probabilities"][label]),
        needs_review=bool(record["needs_review"]),
        review_reason=record.get("review_reason"),
        model_version=str(record["model_version"]),
        model_sha256=str(record["model_sha256"]),
        software_version=__version__,
        predicted_at=str(record["predicted_at"]),
        source_uid=source_uid,
    )


def _write_sr(store: ObjectStore, key: str, header: Any, finding: AiFinding) -> dict[str, Any]:
    """The SR, or why there is none: a header highdicom cannot take fails the SR, not the prediction.
    Only the exception's type is kept, since its text may quote header values."""
    try:
        document = ai_report(header, finding)
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        message = f"the SR could not be made from this header ({type(exc).__name__})"
        return {"sr_skipped": {"code": SR_FAILED, "message": message}}
    store.put_bytes(key, document, DICOM_CONTENT_TYPE)
    return {"sr_key": key}


def write_results(
    store: ObjectStore, dataset: str, original_key: str, data: bytes, finding: AiFinding
) -> dict[str, Any]:
    """Write the SR (DICOM sources) and the FHIR report; {"sr_key", "fhir_key", "sr_skipped"}."""
    written: dict[str, Any] = {"sr_key": None, "fhir_key": None, "sr_skipped": None}
    study: StudyContext | None = None
    if sniff_format(data[:SNIFF_BYTES]) == "dicom":
        try:
            header = read_header(data)
        except NoStudyContext as exc:
            written["sr_skipped"] = {"code": NO_STUDY_CONTEXT, "message": str(exc)}
        else:
            written.update(_write_sr(store, result_sr_key(dataset, original_key), header, finding))
            study = StudyContext(
                study_uid=str(header.StudyInstanceUID),
                patient_id=str(header.get("PatientID") or ""),
                patient_id_issuer=str(header.get("IssuerOfPatientID") or "") or None,
            )
    else:
        written["sr_skipped"] = {"code": "not_dicom", "message": "the source is not DICOM"}
    key = result_fhir_key(dataset, original_key)
    report = diagnostic_report(finding, study)
    store.put_text(key, json.dumps(report, indent=1), FHIR_CONTENT_TYPE)
    written["fhir_key"] = key
    return written
