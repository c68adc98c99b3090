"""Fixtures of the trainer tests: tiny synthetic, learnable image trees (made here, never real data)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# Keep TensorFlow polite on a shared 2-core machine; train.py subprocesses inherit these.
os.environ.setdefault("MEDIMAGE_TF_THREADS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("OMP_NUM_THREADS", "1")


def synthetic_image(label: str, rng: np.random.Generator, size: int) -> np.ndarray:
    """'disk': a bright disk on a dark background; 'bars': horizontal stripes; 'dim': a faint gradient."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    if label == "disk":
        cy, cx = 0.5 + rng.uniform(-0.1, 0.1, 2)
        image = 200.0 * (((yy - cy) ** 2 + (xx - cx) ** 2) < rng.uniform(0.05, 0.08))
    elif label == "bars":
        image = 180.0 * (np.sin(yy * size * rng.uniform(0.7, 0.9)) > 0)
    else:
        image = 60.0 * xx + 30.0
    image = image + rng.normal(0, 12, (size, size))
    return np.clip(image, 0, 255).astype(np.uint8)


def make_tree(
    root: Path,
    per_class: int = 24,
    size: int = 24,
    labels: tuple[str, ...] = ("bars", "disk", "dim"),
    seed: int = 0,
) -> Path:
    """``root/<label>/<label>_<i>.png``: distinct content per image, so the content-hash split varies."""
    rng = np.random.default_rng(seed)
    for label in labels:
        folder = root / label
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(synthetic_image(label, rng, size), mode="L").save(folder / f"{label}_{i}.png")
    return root


@pytest.fixture(scope="session")
def tree_maker() -> Callable[..., Path]:
    """``make_tree`` for tests (a fixture, so test modules need no import path tricks)."""
    return make_tree
