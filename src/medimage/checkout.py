"""Where the project's files are when medimage runs from its source checkout (installed editable).

The CLI's local commands read ``template.yaml``, ``samconfig.toml``, ``training/train.py`` and
``functions/<name>/app.py`` from the checkout; the deployed functions never call this.
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
# src/medimage/ -> the checkout root
INSTALLED_FROM = PACKAGE_DIR.parents[1]


def checkout_root() -> Path | None:
    """The working directory when it holds the project's template, else the checkout this package was
    installed from in editable mode, else None (an installed wheel)."""
    for candidate in (Path.cwd(), INSTALLED_FROM):
        if (candidate / "template.yaml").is_file() and (candidate / "samconfig.toml").is_file():
            return candidate
    return None


def project_file(relative: str) -> Path:
    """A file of the checkout (``template.yaml``, ``training/train.py``...), preferring the one this package
    came from; FileNotFoundError naming the file when there is no checkout."""
    for root in (INSTALLED_FROM, checkout_root()):
        if root is not None and (root / relative).exists():
            return root / relative
    raise FileNotFoundError(f"{relative} not found: run medimage from its source checkout")


def default_template() -> Path:
    """``$MEDIMAGE_TEMPLATE``, else the checkout's ``template.yaml``."""
    return Path(os.environ.get("MEDIMAGE_TEMPLATE") or project_file("template.yaml"))
