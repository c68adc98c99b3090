"""statelint over the state machine definitions, less one gap of statelint 3.1.0 (the newest release):
it does not know ``ReaderConfig.InputType`` of a Distributed Map's ItemReader, which AWS requires for an
``s3:getObject`` reader (CSV, JSON, JSONL, MANIFEST, PARQUET). That one problem is dropped when the value
is one of those; every other problem fails as statelint reports it.

    python scripts/statelint_asl.py statemachine/*.asl.json
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

from statelint.linter import Linter  # type: ignore[import-untyped]

INPUT_TYPES = frozenset({"CSV", "JSON", "JSONL", "MANIFEST", "PARQUET"})
_INPUT_TYPE_PROBLEM = re.compile(r'^Field "InputType" not allowed in (.+)\.ItemReader\.ReaderConfig$')


def _at(definition: dict[str, Any], path: str) -> Any:
    """The node at a statelint path such as ``State Machine.States.Copy`` (state names may hold dots)."""
    node: Any = definition
    rest = path.removeprefix("State Machine")
    while rest:
        rest = rest.removeprefix(".")
        for key in sorted(node, key=len, reverse=True) if isinstance(node, dict) else []:
            if rest == key or rest.startswith(key + "."):
                node, rest = node[key], rest[len(key) :]
                break
        else:
            return None
    return node


def problems(path: Path) -> list[str]:
    definition = json.loads(path.read_text(encoding="utf-8"))
    found = []
    for problem in Linter.validate(definition):
        match = _INPUT_TYPE_PROBLEM.match(str(problem))
        state = _at(definition, match.group(1)) if match else None
        if isinstance(state, dict):
            input_type = ((state.get("ItemReader") or {}).get("ReaderConfig") or {}).get("InputType")
            if input_type in INPUT_TYPES:
                continue
        found.append(str(problem))
    return found


def main(argv: list[str]) -> int:
    failed = 0
    for name in argv:
        for problem in problems(Path(name)):
            print(f"{name}: {problem}")
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
