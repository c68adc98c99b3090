"""What each deployed artifact carries of the medimage package: the one declaration of it.

Three builds read this file: the Lambda layer (Makefile ``build-MedimageLayer``), the inference image
(``functions/inference/Dockerfile``) and the SageMaker training source tarball (``medimage deploy``). The
rest of the package (``cli``, ``local``, ``ops``) serves the command line on a workstation and never ships.
A test walks each handler's and the trainer's import closure and fails when it leaves its set.

Standard library only, so that a build runs it as a script before anything is installed:
``python src/medimage/runtime_sets.py layer DEST`` copies the layer's packages to ``DEST/medimage``.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent

# The subpackages of medimage each artifact carries, beside the package's own __init__.py.
RUNTIME_SETS: dict[str, tuple[str, ...]] = {
    # Every zip function (annotate, split, gate, promote): the pipeline's use cases and adapters; the gate
    # scores the production model with LiteRT (inference, evaluation).
    "layer": ("adapters", "core", "evaluation", "inference", "presets", "services"),
    # The inference function's container image: serving, drop-to-label (its SR and FHIR results) and their
    # adapters.
    "image": ("adapters", "core", "inference", "presets", "results", "services"),
    # SageMaker script mode: the trainer, its evaluation and export (the Android package included).
    "training": ("android", "core", "evaluation", "inference", "presets", "training"),
}

_SKIPPED_DIRS = {"__pycache__"}
_SKIPPED_SUFFIXES = {".pyc", ".pyo"}


def runtime_files(artifact: str, package_dir: Path = PACKAGE_DIR) -> Iterator[tuple[str, Path]]:
    """(path inside the artifact, file) for every file of ``artifact``'s set, sorted, ``medimage/...``."""
    if artifact not in RUNTIME_SETS:
        raise KeyError(f"unknown artifact {artifact!r}: one of {', '.join(sorted(RUNTIME_SETS))}")
    yield "medimage/__init__.py", package_dir / "__init__.py"
    for name in RUNTIME_SETS[artifact]:
        for path in sorted((package_dir / name).rglob("*")):
            rel = path.relative_to(package_dir)
            if path.is_file() and path.suffix not in _SKIPPED_SUFFIXES and not _SKIPPED_DIRS & set(rel.parts):
                yield "medimage/" + rel.as_posix(), path


def copy_runtime_set(artifact: str, dest: Path, package_dir: Path = PACKAGE_DIR) -> list[str]:
    """Copy ``artifact``'s set into ``dest`` (``dest/medimage/...``); returns the names copied."""
    names = []
    for name, path in runtime_files(artifact, package_dir):
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        names.append(name)
    return names


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in RUNTIME_SETS:
        print(f"usage: runtime_sets.py {{{','.join(sorted(RUNTIME_SETS))}}} DEST", file=sys.stderr)
        return 2
    names = copy_runtime_set(argv[0], Path(argv[1]))
    print(f"{argv[0]}: {len(names)} files of medimage copied to {argv[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
