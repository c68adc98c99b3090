"""Service rules on in-memory fakes (tests/fakes.py): no moto, no network, no clock."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
