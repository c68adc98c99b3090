"""template.yaml is valid (the SAM transform and cfn-lint: what `sam validate --lint` runs) and checkov
finds nothing; every check skipped in the template says why."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from template_model import REPO, TEMPLATE

pytestmark = pytest.mark.xdist_group("template")


def test_sam_transform_succeeds(cfn):
    assert "Transform" not in cfn
    assert cfn["Resources"], "the translated template has no resources"


def test_cfn_lint_is_clean():
    cfn_lint = Path(sys.executable).with_name("cfn-lint")
    proc = subprocess.run(
        [str(cfn_lint), str(TEMPLATE)], capture_output=True, text=True, cwd=REPO, timeout=300, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_checkov_reports_no_failed_checks(checkov_bin):
    proc = subprocess.run(
        [
            str(checkov_bin),
            "-f",
            str(TEMPLATE),
            "--framework",
            "cloudformation",
            "--output",
            "json",
            "--quiet",
            "--skip-download",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
        check=False,
    )
    report = json.loads(proc.stdout)
    reports = report if isinstance(report, list) else [report]
    failed = [
        f"{c['check_id']} {c['resource']}: {c['check_name']}"
        for r in reports
        for c in r.get("results", {}).get("failed_checks", [])
    ]
    assert not failed, (
        "checkov failed checks (fix them, or skip in the resource's Metadata with a reason):\n"
        + ("\n".join(failed))
    )
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_every_skipped_check_has_a_one_line_justification(raw_template):
    for name, res in raw_template["Resources"].items():
        skips = ((res.get("Metadata") or {}).get("checkov") or {}).get("skip", [])
        for skip in skips:
            comment = str(skip.get("comment", "")).strip()
            assert skip.get("id", "").startswith("CKV"), (name, skip)
            assert len(comment) >= 20 and "\n" not in comment, f"{name}: skip {skip.get('id')} needs a reason"


def test_list_properties_set_in_globals_are_not_repeated_on_a_function(raw_template):
    """Older SAM translators append a function's list to the Globals list ([x86_64, x86_64] for
    Architectures), which CloudFormation rejects: a list Globals sets is set only there."""
    global_lists = {k for k, v in raw_template["Globals"]["Function"].items() if isinstance(v, list)}
    for name, resource in raw_template["Resources"].items():
        if resource["Type"] == "AWS::Serverless::Function":
            repeated = global_lists & set(resource.get("Properties", {}))
            assert not repeated, f"{name} repeats {sorted(repeated)} from Globals"


def test_the_template_default_image_limit_is_the_code_default(raw_template):
    """CloudFormation cannot import Python: the two defaults of the upload limit must agree."""
    from medimage.core.images import ImageLimits

    assert int(raw_template["Parameters"]["MaxImageBytes"]["Default"]) == ImageLimits.max_bytes
