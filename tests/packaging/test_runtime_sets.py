"""What ships is what runs: each artifact carries its declared runtime set of medimage and nothing else,
and each handler's and the trainer's imports stay inside their artifact's set."""

from __future__ import annotations

import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from medimage.ops.deploy import pack_training_source
from medimage.runtime_sets import RUNTIME_SETS
from tests.packaging.imports import REPO, SRC, chain, closure, imports_of, modules

NEVER_SHIPPED = {"cli", "local", "ops", "checkout.py", "runtime_sets.py"}


def entry_points() -> list[tuple[str, Path]]:
    """(artifact, entry file): each function of the template with the artifact its code runs from, and the
    SageMaker entry point."""
    from cfnlint.decode import decode

    template, matches = decode(str(REPO / "template.yaml"))
    assert not matches
    found = []
    for resource in template["Resources"].values():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        props = resource["Properties"]
        if props.get("PackageType") == "Image":
            found.append(("image", (REPO / resource["Metadata"]["Dockerfile"]).parent / "app.py"))
        else:
            assert {"Ref": "MedimageLayer"} in props["Layers"], props["CodeUri"]
            found.append(("layer", REPO / props["CodeUri"] / "app.py"))
    found.append(("training", REPO / "training" / "train.py"))
    return sorted(found)


def set_of(module: str) -> str:
    """The runtime-set entry a module belongs to: its subpackage, or its own file name at the top."""
    parts = module.split(".")
    if len(parts) == 1:
        return "__init__.py"
    name = parts[1]
    return name if (SRC / "medimage" / name).is_dir() else f"{name}.py"


@pytest.mark.parametrize(
    ("artifact", "entry"), entry_points(), ids=lambda v: v if isinstance(v, str) else v.parent.name
)
def test_entry_point_imports_stay_in_its_runtime_set(artifact: str, entry: Path) -> None:
    allowed = {*RUNTIME_SETS[artifact], "__init__.py"}
    starts = imports_of(entry, entry.stem)
    assert starts, f"{entry} imports nothing of medimage"
    reached = closure(starts)
    outside = sorted(chain(reached, m) for m in reached if set_of(m) not in allowed)
    assert not outside, f"{entry.relative_to(REPO)} reaches outside the {artifact} set:\n" + "\n".join(
        outside
    )


def test_shipped_code_imports_nothing_by_name_at_run_time() -> None:
    """The closure above follows import statements; a module name built at run time would escape it."""
    shipped = {name for names in RUNTIME_SETS.values() for name in names}
    dynamic = re.compile(r"importlib\.import_module\(|__import__\(")
    offenders = [
        str(path.relative_to(REPO))
        for name, path in modules().items()
        if set_of(name) in shipped and dynamic.search(path.read_text(encoding="utf-8"))
    ]
    assert not offenders


def test_every_declared_package_exists_and_the_cli_never_ships() -> None:
    for artifact, names in RUNTIME_SETS.items():
        for name in names:
            assert (SRC / "medimage" / name / "__init__.py").is_file(), (artifact, name)
        assert not NEVER_SHIPPED & set(names), artifact


def staged(artifact: str, dest: Path) -> set[str]:
    """The files the layer and image builds copy: the same command, run as they run it (isolated mode,
    no site-packages: the standard library only)."""
    script = SRC / "medimage" / "runtime_sets.py"
    done = subprocess.run(
        [sys.executable, "-I", "-S", str(script), artifact, str(dest)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return {p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()}


def top_level(names: set[str]) -> set[str]:
    return {name.split("/")[1] for name in names if name.startswith("medimage/")}


@pytest.mark.parametrize("artifact", ["layer", "image"])
def test_staged_set_holds_exactly_the_declared_packages(artifact: str, tmp_path: Path) -> None:
    names = staged(artifact, tmp_path)
    assert top_level(names) == {*RUNTIME_SETS[artifact], "__init__.py"}
    assert "medimage/presets/chestxray2017.json" in names  # package data travels with the code
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)


def test_builds_read_the_declaration() -> None:
    """The layer (Makefile) and the image (Dockerfile) copy the package only through the declaration."""
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    layer_rule = makefile.split("build-MedimageLayer:", 1)[1].split("\n\n", 1)[0]
    assert 'src/medimage/runtime_sets.py" layer' in layer_rule
    assert "src/medimage" not in layer_rule.replace("src/medimage/runtime_sets.py", "")

    dockerfile = (REPO / "functions" / "inference" / "Dockerfile").read_text(encoding="utf-8")
    assert "runtime_sets.py image" in dockerfile
    copies_into_task_root = [
        line for line in dockerfile.splitlines() if line.startswith("COPY") and "LAMBDA_TASK_ROOT" in line
    ]
    assert [line for line in copies_into_task_root if "medimage" in line] == [
        'COPY --from=runtime-set /build/staged/medimage "${LAMBDA_TASK_ROOT}/medimage"'
    ]


def test_training_tarball_holds_the_training_set(tmp_path: Path) -> None:
    tarball = pack_training_source(REPO, tmp_path / "sourcedir.tar.gz")
    with tarfile.open(tarball) as tar:
        names = set(tar.getnames())
    assert top_level(names) == {*RUNTIME_SETS["training"], "__init__.py"}
    outside_package = {name for name in names if not name.startswith("medimage/")}
    assert outside_package == {p.name for p in (REPO / "training").iterdir() if p.is_file()}
