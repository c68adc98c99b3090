"""statelint (the newest release, 3.1.0) on the workflow files, less the problems it reports for ASL it
does not know yet. Exit status 1 with every other problem printed, as statelint itself.

    .venv/bin/python scripts/lint_asl.py statemachine/*.asl.json

Known gaps: a Distributed Map's ``ItemReader.ReaderConfig.InputType`` (``JSON`` for a JSON array read with
``s3:getObject``, as Step Functions' ItemReader documentation has it) is refused as "not allowed"."""

from __future__ import annotations

import re
import sys

from statelint.config import Config
from statelint.linter import Linter

KNOWN_GAPS = (
    re.compile(r'^Field "InputType" not allowed in State Machine\.States\.\w+\.ItemReader\.ReaderConfig$'),
)


def problems(path: str) -> list[str]:
    """statelint's problems with ``path``, the known gaps left out."""
    found = [str(p) for p in Linter.validate(path, Config())]
    return [p for p in found if not any(gap.match(p) for gap in KNOWN_GAPS)]


def main(paths: list[str]) -> int:
    failed = 0
    for path in paths:
        found = problems(path)
        if found:
            failed = 1
            print(f"{path}: {len(found)} error(s):")
            for problem in found:
                print(f" {problem}")
    return failed


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
