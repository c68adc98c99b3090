"""Training and serving must preprocess identically; these tests fail if they ever drift apart."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medimage.core.preprocess import PreprocessSpec, load_image_array
from medimage.core.presets import get_preset
from medimage.training.data import load_channel
from medimage.training.runner import scan_tree, write_channel

SPEC = PreprocessSpec(image_size=32, channels=1)


@pytest.fixture
def channel_dir(tmp_path: Path, tree_maker: Callable[..., Path]) -> Path:
    tree = tree_maker(tmp_path / "tree", per_class=8, size=48)
    # A JPEG (RGB, larger than the target) too, so draft decoding and colour conversion are exercised.
    rgb = np.stack([np.asarray(Image.open(next((tree / "disk").iterdir())))] * 3, axis=-1)
    Image.fromarray(np.pad(rgb, ((0, 80), (0, 40), (0, 0)))).save(tree / "disk" / "big.jpeg", quality=90)
    return write_channel(tmp_path / "channel", "train", scan_tree(tree, get_preset("folders")).images)


def test_trainer_arrays_equal_the_serving_preprocessing(channel_dir: Path) -> None:
    # GIVEN a channel; WHEN the trainer loads it; THEN each array is exactly load_image_array(file bytes)
    channel = load_channel("train", channel_dir, SPEC)
    assert channel.x.shape[1:] == (32, 32, 1)
    for array, path in zip(channel.x, channel.paths, strict=True):
        np.testing.assert_array_equal(array.astype(np.float32), load_image_array(path.read_bytes(), SPEC))


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
