"""The package's layers import downwards only, and no two modules import each other, directly or around a
loop: a loop is what made the trainer's entry point and its contract inseparable."""

from __future__ import annotations

import re

import pytest

from tests.packaging.imports import SRC, graph, loops

# Who may not import whom. core is pure rules; services and inference hold the use cases and the ports that
# adapters implement; the trainer and its Android export use inference's runtime; nothing that ships reaches
# into the workstation side (local, ops, cli), which may use everything below it.
UPWARD_FORBIDDEN = {
    "core": {"adapters", "services", "inference", "evaluation", "training", "android", "local", "ops", "cli"},
    "services": {"adapters", "inference", "evaluation", "training", "android", "local", "ops", "cli"},
    "inference": {"adapters", "evaluation", "training", "android", "local", "ops", "cli"},
    "adapters": {"evaluation", "training", "android", "local", "ops", "cli"},
    "evaluation": {"adapters", "training", "android", "local", "ops", "cli"},
    "training": {"adapters", "local", "ops", "cli"},
    "android": {"adapters", "local", "ops", "cli"},
    "local": {"cli"},
    "ops": {"local", "cli"},
}


def test_no_import_loops() -> None:
    assert loops() == []


@pytest.mark.parametrize("layer", sorted(UPWARD_FORBIDDEN))
def test_layer_imports_only_downwards(layer: str) -> None:
    forbidden = UPWARD_FORBIDDEN[layer]
    arrows = sorted(
        f"{source} -> {target}"
        for source, targets in graph().items()
        if source.split(".")[1:2] == [layer]
        for target in targets
        if target.split(".")[1:2] and target.split(".")[1] in forbidden
    )
    assert not arrows


def test_shipped_package_never_imports_the_harness_or_the_tests() -> None:
    offenders = sorted(
        f"{path.relative_to(SRC)}: {line.strip()}"
        for path in sorted((SRC / "medimage").rglob("*.py"))
        for line in path.read_text(encoding="utf-8").splitlines()
        if re.match(r"\s*(from|import)\s+(harness|tests)\b", line)
    )
    assert not offenders
