"""Least privilege, enforced: the functions' tests run under their own IAM policies (enforce.py)."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Tests here import their helper modules; pytest runs with --import-mode=importlib.
for path in (HERE, HERE.parent / "template"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))
