"""The workflow definition passes statelint (scripts/statelint_asl.py, what `make lint` runs), which forgives
only the ASL its newest release does not know yet (a Distributed Map's ReaderConfig.InputType)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LINT = REPO / "scripts" / "statelint_asl.py"
DEFINITION = REPO / "statemachine" / "training.asl.json"


def lint(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(LINT), str(path)], capture_output=True, text=True, timeout=60, check=False
    )


def test_the_workflow_passes():
    result = lint(DEFINITION)
    assert result.returncode == 0, result.stdout
    assert json.loads(DEFINITION.read_text())["States"]["PackShards"]["ItemReader"]["ReaderConfig"] == {
        "InputType": "JSON"
    }


def test_any_other_problem_still_fails(tmp_path):
    definition = json.loads(DEFINITION.read_text())
    definition["States"]["PackShards"]["ItemReader"]["ReaderConfig"]["InputKind"] = "JSON"
    definition["States"]["ChooseInput"]["Default"] = "NoSuchState"
    broken = tmp_path / "broken.asl.json"
    broken.write_text(json.dumps(definition))
    result = lint(broken)
    assert result.returncode == 1
    assert '"InputKind" not allowed' in result.stdout and "NoSuchState" in result.stdout
    assert '"InputType" not allowed' not in result.stdout
