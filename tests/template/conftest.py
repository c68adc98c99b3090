"""Fixtures of the template tests: template.yaml as written, and as CloudFormation after the SAM transform.

The translation runs SAM CLI's own translator in the SAM virtual environment (tests/template/translate.py),
and checkov runs from its own environment: `make test` makes both (`make sam-install checkov-install`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

# Tests here import their helper module (template_model); pytest runs with --import-mode=importlib.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from template_model import REPO, TEMPLATE

SAM_PYTHON = Path(os.environ.get("MEDIMAGE_SAM_PYTHON", REPO / ".venv-sam" / "bin" / "python"))
CHECKOV = Path(os.environ.get("MEDIMAGE_CHECKOV", REPO / ".venv-checkov" / "bin" / "checkov"))


def require_tool(path: Path, make_target: str) -> Path:
    """A tool from one of the side virtual environments: missing fails under CI, skips elsewhere."""
    if path.exists():
        return path
    message = f"{path} is missing: run `make {make_target}` (make test does)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def raw_template() -> dict[str, Any]:
    """template.yaml as written (short-form intrinsics become {"Ref": ...} and friends)."""
    from cfnlint.decode import decode

    template, matches = decode(str(TEMPLATE))
    assert not matches, [str(m) for m in matches]
    return template


@pytest.fixture(scope="session")
def cfn() -> dict[str, Any]:
    """The CloudFormation template that the SAM transform makes of template.yaml."""
    python = require_tool(SAM_PYTHON, "sam-install")
    proc = subprocess.run(
        [str(python), str(Path(__file__).with_name("translate.py")), str(TEMPLATE)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, f"SAM transform failed:\n{proc.stderr[-4000:]}"
    return json.loads(proc.stdout)


@pytest.fixture(scope="session")
def checkov_bin() -> Path:
    return require_tool(CHECKOV, "checkov-install")
