"""Least privilege, enforced: the tests of every function run again with each function limited to its own
statements of template.yaml (enforce.py), and the grants no call needed are reported.

- Any call a function makes that its policy does not allow fails (the child run fails, with the call).
- build/iam-usage.json lists, per function, each grant with the calls that used it, and the unused ones;
  an unused grant of a write action fails unless usage_report.ALLOWED_UNUSED says why it stays.
- Taking one statement away makes the enforcement fail, for each enforcement on its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from function_policies import SAM_PYTHON, FunctionPolicies, translate
from usage_report import build

pytestmark = pytest.mark.xdist_group("iam")

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "build" / "iam"
REPORT = REPO / "build" / "iam-usage.json"

# The tests that run each function's handler, on moto: every function of the template must be covered.
SUITES = [
    "tests/integration",  # annotate (S3 -> SQS -> handler), split (_commit), delivery, DICOM
    "tests/orchestration/test_handlers.py",  # gate and promote on the recorded task inputs
    "tests/orchestration/test_pack_handler.py",  # pack: manifests/ + incoming/labeled/ -> shards/
    "tests/inference/test_drop_to_label.py",  # inference: incoming/unlabeled/ -> predictions/
    "tests/inference/test_api.py",  # inference: POST /predict, GET /health
    "tests/inference/test_stow.py",  # inference: STOW-RS -> incoming/unlabeled/, quarantine/, pacs/failed/
    "tests/inference/test_trial.py",  # inference: a candidate's silent trial -> trials/
    "tests/orchestration/test_rollback_handler.py",  # rollback: an alarm event -> production.json
    "tests/inference/test_review_api.py",  # inference: the review worklist, review/ -> incoming/labeled/
    "tests/services/test_bulk_copy_handler.py",  # bulk copy: check, copy a batch, finish (+ _commit)
]


def run_enforced(
    paths: list[str], record: Path, cfn_path: Path, drop: str = "", layers: str = "evaluator,moto"
) -> subprocess.CompletedProcess[str]:
    here = Path(__file__).resolve().parent
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            [str(here), str(here.parent / "template"), os.environ.get("PYTHONPATH", "")]
        ),
        "MEDIMAGE_IAM_CFN": str(cfn_path),
        "MEDIMAGE_IAM_RECORD": str(record),
        "MEDIMAGE_IAM_DROP": drop,
        "MEDIMAGE_IAM_LAYERS": layers,
    }
    command = [sys.executable, "-m", "pytest", "-p", "enforce", *paths]
    command += ["-q", "-p", "no:xdist", "-p", "no:cacheprovider", "-m", "not slow"]
    return subprocess.run(
        command, cwd=REPO, env=env, capture_output=True, text=True, timeout=1800, check=False
    )


@pytest.fixture(scope="module")
def cfn_path() -> Path:
    if not SAM_PYTHON.exists():
        message = f"{SAM_PYTHON} is missing: run `make sam-install` (make test does)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "cfn.json"
    path.write_text(json.dumps(translate()), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def policies(cfn_path: Path) -> FunctionPolicies:
    return FunctionPolicies(json.loads(cfn_path.read_text(encoding="utf-8")))


# The enforced run takes minutes: once per test process, even where pytest-xdist tears the module down
# between its tests.
_ENFORCED: dict[str, tuple[subprocess.CompletedProcess[str], dict[str, Any]]] = {}


@pytest.fixture(scope="module")
def enforced(cfn_path: Path) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    key = str(cfn_path)
    if key not in _ENFORCED:
        record = OUT / "record.json"
        record.unlink(missing_ok=True)
        proc = run_enforced(SUITES, record, cfn_path)
        assert record.exists(), (
            f"the enforced run wrote no record:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
        _ENFORCED[key] = (proc, json.loads(record.read_text(encoding="utf-8")))
    return _ENFORCED[key]


@pytest.fixture(scope="module")
def report(policies: FunctionPolicies, enforced: tuple[Any, dict[str, Any]]) -> dict[str, Any]:
    _, record = enforced
    result = build(policies, record, sorted(policies.functions))
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(json.dumps(result, indent=1), encoding="utf-8")
    print(f"least-privilege report: {REPORT}")
    for function, data in result["functions"].items():
        used = sorted({(g["statement"], g["action"]) for g in data["grants"] if g["uses"]})
        print(f"{function}: used {used}")
        for grant in data["unused"]:
            level = grant["access_level"]
            print(f"  unused: {grant['statement']} {grant['action']} {grant['resource']} ({level})")
    return result


def test_every_function_test_passes_under_its_own_policy(enforced):
    proc, record = enforced
    summary = "\n".join(proc.stdout.splitlines()[-40:])
    assert record["denials"] == [], (
        f"denied calls:\n{json.dumps(record['denials'][:10], indent=1)}\n{summary}"
    )
    assert proc.returncode == 0, (
        f"the functions' tests failed under their policies:\n{summary}\n{proc.stderr[-2000:]}"
    )


def test_every_function_made_calls_under_enforcement(policies, enforced):
    _, record = enforced
    checked = {row["function"] for row in record["evaluations"] if row["kind"] == "call"}
    assert checked == set(policies.functions), (
        f"functions whose calls were never checked: {set(policies.functions) - checked}"
    )


def test_no_grant_of_a_write_action_goes_unused(report):
    assert report["failures"] == [], "\n".join(report["failures"])


@pytest.mark.parametrize(
    ("layers", "drop", "test", "expected"),
    [
        (
            "evaluator",
            "AnnotateFunction:WriteQuarantine",
            "tests/integration/test_annotate.py::test_bad_files_are_moved_to_quarantine_with_a_reason",
            "s3:PutObject",
        ),
        (
            "moto",
            "AnnotateFunction:WriteQuarantine",
            "tests/integration/test_annotate.py::test_bad_files_are_moved_to_quarantine_with_a_reason",
            "s3:CopyObject",
        ),
        (
            # The packer reads images on pool threads: their calls are the function's too.
            "evaluator",
            "PackFunction:ReadLabeledImages",
            "tests/orchestration/test_pack_handler.py::test_a_shard_is_packed_once_from_its_rows_images",
            "s3:GetObject",
        ),
        (
            "moto",
            "PackFunction:ReadLabeledImages",
            "tests/orchestration/test_pack_handler.py::test_a_shard_is_packed_once_from_its_rows_images",
            "s3:GetObject",
        ),
        (
            "evaluator",
            "InferenceFunction:WorkReviewQueue",
            "tests/inference/test_review_api.py::test_confirm_and_modify_move_the_image_and_record_the_reviewer",
            "s3:GetObject",
        ),
        (
            "evaluator",
            "AnnotateFunction:RecordImagesConditionally",
            "tests/integration/test_annotate.py::test_valid_uploads_are_catalogued_with_label_patient_and_split",
            "dynamodb:PutItem",
        ),
        (
            "evaluator",
            "RollbackFunction:SwapProductionPointer",
            "tests/orchestration/test_rollback_handler.py::"
            "test_an_alarm_event_rolls_production_back_once_and_model_list_shows_the_alarm",
            "s3:PutObject",
        ),
    ],
)
def test_taking_a_statement_away_fails_the_functions_tests(cfn_path, layers, drop, test, expected):
    name = drop.replace(":", "-")
    record = OUT / f"drop-{layers}-{name}.json"
    proc = run_enforced([test], record, cfn_path, drop=drop, layers=layers)
    denials = json.loads(record.read_text(encoding="utf-8"))["denials"]
    assert proc.returncode != 0, f"{test} passed without {drop}"
    assert any(expected in (d["action"] or d["operation"]) for d in denials), denials[:3]
    assert "calls template.yaml does not allow" in proc.stdout
