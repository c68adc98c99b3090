"""The results a PACS and a record system read: the AI's SR, a clinician's SR, the FHIR report, and where
drop-to-label writes them (an in-memory bucket)."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import highdicom as hd
import pydicom
import pytest
from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from PIL import Image
from pydicom.uid import ComprehensiveSRStorage

from medimage.core.layout import result_fhir_key, result_sr_key
from medimage.core.presets import get_preset
from medimage.results import codes
from medimage.results.fhir import StudyContext, diagnostic_report
from medimage.results.finding import AiFinding, Verdict
from medimage.results.sr import ai_report, read_header, read_report, review_report
from medimage.results.writer import NO_STUDY_CONTEXT, write_results

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from dicom_factory import ACCESSION, BIRTH_DATE, PATIENT_ID, PATIENT_NAME, make_dicom, reference_image
from fakes import InMemoryObjectStore

DATASET = "chestxray2017"
KEY = "incoming/unlabeled/chestxray2017/scan-1.dcm"


def finding(label: str = "bacterial", needs_review: bool = True, reason: str | None = "low_confidence"):
    return AiFinding(
        dataset=DATASET,
        label=label,
        probability=0.6125,
        needs_review=needs_review,
        review_reason=reason if needs_review else None,
        model_version="20261125-0001",
        model_sha256="ab" * 32,
        software_version="0.1.0",
        predicted_at="2026-11-25T10:20:30+00:00",
        source_uid=f"{KEY}|None|00AA",
    )


@pytest.fixture(scope="module")
def source() -> bytes:
    return make_dicom(reference_image())


def parse_fhir(doc: dict[str, Any]) -> DiagnosticReport:
    """Back from JSON text through fhir.resources' R4B model, as a record system would receive it."""
    return DiagnosticReport.model_validate_json(json.dumps(doc))


def validator_errors(data: bytes, tmp_path: Path) -> list[str]:
    """dciodvfy's (dicom3tools) errors on the SR: its IOD, modules and template rules. The validator is a
    Debian package (`make orthanc-deps`); without it this skips, except in CI, where it fails."""
    if not shutil.which("dciodvfy"):
        if os.environ.get("CI"):
            pytest.fail("dciodvfy is missing: make orthanc-deps installs dicom3tools")
        pytest.skip("dciodvfy (dicom3tools) not installed: make orthanc-deps")
    path = tmp_path / "report.sr.dcm"
    path.write_bytes(data)
    checked = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    return [line for line in (checked.stdout + checked.stderr).splitlines() if line.startswith("Error")]


# ---------------------------------------------------------------- the AI's SR


def test_the_sr_reads_back_with_the_finding_probability_and_model(source, tmp_path):
    header = read_header(source)
    data = ai_report(header, finding())
    assert validator_errors(data, tmp_path) == []
    summary = read_report(data)
    assert summary.finding == codes.Concept("53084003", "SCT", "Bacterial pneumonia")
    assert summary.probability == pytest.approx(0.6125)
    assert summary.needs_review is True
    assert summary.review_reason == codes.REVIEW_REASONS["low_confidence"]
    assert summary.algorithm_name == "medimage chestxray2017 classifier"
    assert summary.algorithm_version == "20261125-0001"
    assert "model sha256 " + "ab" * 32 in summary.algorithm_parameters
    assert summary.evidence_uids == (header.SOPInstanceUID,)  # the classified image


def test_the_sr_is_in_the_source_study_with_its_patient_in_a_new_series(source):
    header = read_header(source)
    sr = pydicom.dcmread(io.BytesIO(ai_report(header, finding())))
    assert sr.SOPClassUID == ComprehensiveSRStorage
    assert sr.StudyInstanceUID == header.StudyInstanceUID
    assert sr.SeriesInstanceUID != header.SeriesInstanceUID and sr.Modality == "SR"
    assert (str(sr.PatientName), sr.PatientID, sr.PatientBirthDate, sr.AccessionNumber) == (
        PATIENT_NAME,
        PATIENT_ID,
        BIRTH_DATE,
        ACCESSION,
    )
    assert sr.ContentDate == "20261125" and sr.ContentTime == "102030"
    assert isinstance(hd.sr.srread(io.BytesIO(ai_report(header, finding()))), hd.sr.ComprehensiveSR)


def test_a_redelivered_prediction_gets_the_same_sr_uids(source):
    header = read_header(source)
    first = pydicom.dcmread(io.BytesIO(ai_report(header, finding())))
    again = pydicom.dcmread(io.BytesIO(ai_report(header, finding())))
    assert (first.SOPInstanceUID, first.SeriesInstanceUID) == (again.SOPInstanceUID, again.SeriesInstanceUID)


def test_a_sure_prediction_says_no_review(source):
    summary = read_report(ai_report(read_header(source), finding("normal", needs_review=False)))
    assert summary.finding == codes.FINDINGS["normal"]
    assert summary.needs_review is False and summary.review_reason is None


@pytest.mark.parametrize("preset", ["chestxray2017", "chestxray2017-binary", "oct2017"])
def test_every_class_of_the_shipped_presets_has_a_concept(preset):
    for label in get_preset(preset).classes:
        assert label.casefold() in codes.FINDINGS, label


def test_a_class_the_table_lacks_gets_a_local_code(source):
    summary = read_report(ai_report(read_header(source), finding("cardiomegaly", needs_review=False)))
    assert summary.finding == codes.Concept("cardiomegaly", codes.LOCAL_SCHEME, "cardiomegaly")


def test_a_dicom_without_a_study_uid_has_no_study_context():
    from medimage.results.sr import NoStudyContext

    with pytest.raises(NoStudyContext) as raised:
        read_header(make_dicom(reference_image(), study_uid=None))
    assert raised.value.missing == "StudyInstanceUID"


# ---------------------------------------------------------------- the clinician's SR


@pytest.mark.parametrize(("label", "verdict"), [("viral", codes.MODIFIED), ("Bacterial", codes.ACCEPTED)])
def test_a_verdict_is_an_sr_of_its_own_that_refers_to_the_ai_sr(source, label, verdict, tmp_path):
    header = read_header(source)
    ai = ai_report(header, finding())
    data = review_report(ai, Verdict(label, "bacterial", "Smith^Ann", "2026-11-26T08:00:00+00:00"))
    assert validator_errors(data, tmp_path) == []
    summary, first = read_report(data), read_report(ai)
    assert summary.verdict == verdict
    assert summary.finding == codes.finding_concept(label)
    assert summary.sop_uid != first.sop_uid and summary.study_uid == header.StudyInstanceUID
    assert set(summary.evidence_uids) == {first.sop_uid, header.SOPInstanceUID}
    assert summary.probability is None and summary.algorithm_name is None  # the person's, not the AI's
    sr = pydicom.dcmread(io.BytesIO(data))
    assert str(sr.PatientName) == PATIENT_NAME and sr.SeriesInstanceUID != first.study_uid
    observer = hd.sr.srread(io.BytesIO(data)).content.get_observer_contexts()[0]
    assert "Smith^Ann" in str(observer)


# ---------------------------------------------------------------- FHIR


def test_the_fhir_report_names_the_study_the_patient_and_the_model():
    doc = diagnostic_report(finding(), StudyContext("1.2.826.0.1.99", PATIENT_ID, "HOSP"))
    report = parse_fhir(doc)
    assert report.status == "preliminary"  # needs review
    assert report.imagingStudy[0].identifier.value == "urn:oid:1.2.826.0.1.99"
    assert report.subject.identifier.value == PATIENT_ID
    observation, device = report.contained
    assert observation.code.coding[0].code == "53084003"
    assert observation.code.coding[0].system == "http://snomed.info/sct"
    assert float(observation.valueQuantity.value) == pytest.approx(0.6125)
    review = {c.code.coding[0].code: c for c in observation.component}
    assert review["REVIEW_NEEDED"].valueBoolean is True
    assert review["REVIEW_REASON"].valueCodeableConcept.coding[0].code == "LOW_CONFIDENCE"
    assert observation.device.reference == "#model"
    versions = {v.type.text: v.value for v in device.version}
    assert versions == {"model version": "20261125-0001", "software version": "0.1.0"}
    assert device.identifier[0].value == "ab" * 32


def test_a_sure_prediction_of_a_png_is_final_and_names_no_patient():
    report = parse_fhir(diagnostic_report(finding("normal", needs_review=False), None))
    assert report.status == "final"
    assert report.subject is None and report.imagingStudy is None
    assert [c.valueBoolean for c in report.contained[0].component] == [False]


# ---------------------------------------------------------------- written beside the result


def png_bytes() -> bytes:
    out = io.BytesIO()
    Image.fromarray(reference_image()).save(out, format="PNG")
    return out.getvalue()


def test_a_dicom_gets_an_sr_and_a_fhir_report_beside_its_result(source):
    store = InMemoryObjectStore()
    written = write_results(store, DATASET, KEY, source, finding())
    assert written == {
        "sr_key": result_sr_key(DATASET, KEY),
        "fhir_key": result_fhir_key(DATASET, KEY),
        "sr_skipped": None,
    }
    assert written["sr_key"] == "predictions/chestxray2017/scan-1.dcm.sr.dcm"
    assert read_report(store.get_bytes(written["sr_key"])).finding.value == "53084003"
    report = parse_fhir(store.get_json(written["fhir_key"]))
    assert report.imagingStudy[0].identifier.value == f"urn:oid:{read_header(source).StudyInstanceUID}"


def test_a_png_and_a_dicom_outside_any_study_get_the_fhir_report_only():
    store = InMemoryObjectStore()
    png = write_results(store, DATASET, "incoming/unlabeled/chestxray2017/a.png", png_bytes(), finding())
    no_study = make_dicom(reference_image(), study_uid=None)
    dicom = write_results(store, DATASET, KEY, no_study, finding())
    assert png["sr_key"] is None and png["sr_skipped"]["code"] == "not_dicom"
    assert dicom["sr_key"] is None and dicom["sr_skipped"]["code"] == NO_STUDY_CONTEXT
    assert not [k for k in store.keys("predictions/") if k.endswith(".dcm")]
    for written in (png, dicom):
        parse_fhir(store.get_json(written["fhir_key"]))
