"""What each inference image would ship (the installed size of its requirement closure) and the machine
the figures belong to: the context of an inference report, apart from the timing."""

from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

from medimage.runtime_sets import runtime_files

# The Lambda Python base image already holds these (boto3 and its dependencies).
BASE_IMAGE_PACKAGES = {"boto3", "botocore", "s3transfer", "jmespath", "urllib3", "python-dateutil", "six"}
INFERENCE_REQUIREMENTS = "functions/inference/requirements.txt"


def _dist(name: str) -> metadata.Distribution | None:
    for candidate in (name, name + "-cpu", name.replace("-", "_")):
        try:
            return metadata.distribution(candidate)
        except metadata.PackageNotFoundError:
            continue
    return None


def shipped(runtime: str) -> list[str]:
    """The packages each image installs: the inference image's requirements (the DICOM decoders included),
    with TensorFlow in place of LiteRT for the full-TensorFlow image."""
    from medimage.checkout import project_file

    names = []
    for line in project_file(INFERENCE_REQUIREMENTS).read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.append(line.split("==", 1)[0].split("[", 1)[0].strip())
    if runtime == "tensorflow":
        names = ["tensorflow" if name == "ai-edge-litert" else name for name in names]
    return names


def ship_bytes(roots: list[str]) -> tuple[int, list[str]]:
    """Installed size of the requirement closure of `roots` (extras and non-matching markers skipped), plus
    the inference image's runtime set of medimage."""
    from packaging.requirements import Requirement

    seen: dict[str, metadata.Distribution] = {}
    todo = list(roots)
    while todo:
        dist = _dist(todo.pop())
        if dist is None:
            continue
        name = dist.metadata["Name"].lower().replace("_", "-")
        if name in seen or name in BASE_IMAGE_PACKAGES:
            continue
        seen[name] = dist
        for raw in dist.requires or []:
            req = Requirement(raw)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    total = 0
    for dist in seen.values():
        for file in dist.files or []:
            path = Path(str(dist.locate_file(file)))
            if path.is_file():
                total += path.stat().st_size
    total += sum(path.stat().st_size for _, path in runtime_files("image"))  # what the image carries
    return total, sorted(seen)


def machine() -> dict[str, Any]:
    """The machine the figures belong to, and how busy it was (load average) when the run began."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "load_average_1m": round(os.getloadavg()[0], 2),
    }
