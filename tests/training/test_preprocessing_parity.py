"""Training and serving must preprocess identically; these tests fail if they ever drift apart.

The trainer's arrays come from `medimage.training.data.load_channel`, the inference Lambda's from
`medimage.inference.decode.decode_image` (what `InferenceService.predict` calls): two code paths, so
comparing them on the same file bytes is a real check.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medimage.core.images import ImageLimits
from medimage.core.manifests import CSV_FIELDS
from medimage.core.preprocess import PreprocessSpec
from medimage.core.presets import get_preset
from medimage.inference.decode import decode_image
from medimage.training.data import load_channel
from medimage.training.runner import scan_tree, write_channel

SPEC = PreprocessSpec(image_size=32, channels=1)

# (file name, PIL mode, (width, height)): both formats, both colour modes, larger and smaller than the
# 32-pixel target, square and not, and a 16-bit PNG. The large JPEGs are decoded in draft mode (scaled
# while decoding).
PARITY_IMAGES = [
    ("gray-square.png", "L", (48, 48)),
    ("gray-wide.jpeg", "L", (300, 200)),
    ("gray-small.jpeg", "L", (20, 24)),
    ("gray16-wide.png", "I;16", (96, 64)),
    ("rgb-tall.png", "RGB", (40, 120)),
    ("rgb-large.jpeg", "RGB", (512, 384)),
    ("rgb-exact.jpeg", "RGB", (32, 32)),
]


def _pixels(mode: str, size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Gradients, fine stripes and noise: content on which resampling filters give different pixels."""
    width, height = size
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    base = (
        90 * xx / width + 60 * yy / height + 50 * (np.sin(xx / 1.7) > 0) + rng.normal(0, 15, (height, width))
    )
    if mode == "L":
        return np.clip(base, 0, 255).astype(np.uint8)
    if mode == "I;16":
        return np.clip(base * 257, 0, 65535).astype(np.uint16)
    tint = np.stack([base, base[::-1] * 0.8 + 30, 255 - base], axis=-1)
    return np.clip(tint, 0, 255).astype(np.uint8)


@pytest.fixture
def parity_channel(tmp_path: Path) -> Path:
    """A channel as SageMaker delivers it (manifest CSV + images at their keys) holding PARITY_IMAGES."""
    rng = np.random.default_rng(3)
    channel_dir = tmp_path / "channel"
    (channel_dir / "images").mkdir(parents=True)
    with (channel_dir / "train.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(CSV_FIELDS)
        for name, mode, size in PARITY_IMAGES:
            path = channel_dir / "images" / name
            image = Image.fromarray(_pixels(mode, size, rng))  # uint16 arrays make 16-bit PNGs
            if path.suffix == ".jpeg":
                image.save(path, quality=90)
            else:
                image.save(path)
            writer.writerow((f"images/{name}", "a", hashlib.sha256(path.read_bytes()).hexdigest(), ""))
    return channel_dir


@pytest.mark.parametrize("channels", [1, 3])
def test_trainer_arrays_equal_what_the_inference_lambda_decodes(parity_channel: Path, channels: int) -> None:
    # GIVEN a channel of JPEGs and PNGs, grayscale and RGB, of several sizes and shapes
    spec = PreprocessSpec(image_size=32, channels=channels)
    # WHEN the trainer loads it, and the inference decode path reads the same files' bytes
    channel = load_channel("train", parity_channel, spec)
    assert len(channel) == len(PARITY_IMAGES)
    assert channel.x.shape[1:] == (32, 32, channels)
    for array, path in zip(channel.x, channel.paths, strict=True):
        served = decode_image(path.read_bytes(), spec, ImageLimits())
        # THEN the network is fed, pixel for pixel, what it will be shown in production
        assert served.dtype == np.float32 and served.shape == (32, 32, channels), path.name
        np.testing.assert_array_equal(array.astype(np.float32), served, err_msg=path.name)


@pytest.fixture
def channel_dir(tmp_path: Path, tree_maker: Callable[..., Path]) -> Path:
    tree = tree_maker(tmp_path / "tree", per_class=8, size=48)
    # A JPEG (RGB, larger than the target) too, so draft decoding and colour conversion are exercised.
    rgb = np.stack([np.asarray(Image.open(next((tree / "disk").iterdir())))] * 3, axis=-1)
    Image.fromarray(np.pad(rgb, ((0, 80), (0, 40), (0, 0)))).save(tree / "disk" / "big.jpeg", quality=90)
    return write_channel(tmp_path / "channel", "train", scan_tree(tree, get_preset("folders")).images)


@pytest.mark.slow
def test_agreement_check_catches_a_preprocessing_mismatch(channel_dir: Path) -> None:
    import keras

    from medimage.inference.model import TFLiteClassifier
    from medimage.training.export import ExportError, check_agreement, to_tflite_float
    from medimage.training.model import compact_cnn

    keras.utils.set_random_seed(1)
    model = compact_cnn(32, 1, 3, width=4)
    classifier = TFLiteClassifier(to_tflite_float(model), ["a", "b", "c"], SPEC, {})
    channel = load_channel("train", channel_dir, SPEC)
    served = np.stack(
        [[classifier.predict_bytes(p.read_bytes()).probabilities[k] for k in "abc"] for p in channel.paths]
    )
    # The trainer's own arrays: Keras and the served model agree.
    same = model.predict(channel.x.astype(np.float32), verbose=0)
    assert check_agreement(same, served)["max_abs_diff"] <= 1e-3
    # Classic mismatches: the trainer scaled to 0..1 (the model then rescales twice), or it resized from
    # the full-size decode with another filter. The check refuses both.
    scaled = model.predict(channel.x.astype(np.float32) / 255.0, verbose=0)
    with pytest.raises(ExportError, match="preprocess"):
        check_agreement(scaled, served)

    def bicubic_array(path: Path) -> np.ndarray:
        image = Image.open(path).convert("L").resize((32, 32), Image.Resampling.BICUBIC)
        return np.asarray(image, np.float32)[..., None]

    bicubic = np.stack([bicubic_array(p) for p in channel.paths])
    assert not np.array_equal(bicubic, channel.x.astype(np.float32))
    with pytest.raises(ExportError):
        check_agreement(model.predict(bicubic, verbose=0), served, tolerance=1e-4)
