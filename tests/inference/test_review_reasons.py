"""Why a served prediction goes to review: low confidence, or an image unlike the training images."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medimage.core.errors import ModelError
from medimage.core.input_profile import InputProfile
from medimage.inference.model import TFLiteClassifier, review_decision

from .conftest import build_model_dir


def png(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8), "L").save(buf, "PNG")
    return buf.getvalue()


def noisy_grey(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(rng.normal(120, 40, (64, 64)), 0, 255)


@pytest.fixture(scope="module")
def profiled_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test model with an input profile fitted on noisy grey images."""
    out = build_model_dir(tmp_path_factory.mktemp("profiled"), seed=3, review_threshold=0.0)
    meta = json.loads((out / "model.json").read_text())
    meta["input_profile"] = InputProfile.fit(np.stack([noisy_grey(s) for s in range(200)])).to_dict()
    (out / "model.json").write_text(json.dumps(meta))
    return out


def test_an_image_unlike_the_training_images_goes_to_review_whatever_its_confidence(profiled_model):
    classifier = TFLiteClassifier.from_dir(profiled_model)
    blank = classifier.predict_bytes(png(np.full((64, 64), 250)))
    assert blank.needs_review and blank.review_reason == "outside_training_distribution"
    ordinary = classifier.predict_bytes(png(noisy_grey(500)))
    assert not ordinary.needs_review and ordinary.review_reason is None


def test_a_model_without_a_profile_only_reviews_on_confidence(model_v1):
    classifier = TFLiteClassifier.from_dir(model_v1)
    assert classifier.input_profile is None
    assert not classifier.predict_bytes(png(np.full((64, 64), 250))).needs_review


def test_the_distribution_reason_outranks_low_confidence():
    assert review_decision(0.99, 0.9, outside=True) == (True, "outside_training_distribution")
    assert review_decision(0.5, 0.9) == (True, "low_confidence")
    assert review_decision(0.95, 0.9) == (False, None)
    assert review_decision(0.1, None) == (False, None)


def test_a_broken_profile_in_model_json_is_a_model_error(profiled_model, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    for path in profiled_model.iterdir():
        (broken / path.name).write_bytes(path.read_bytes())
    meta = json.loads((broken / "model.json").read_text())
    meta["input_profile"] = {"mean": [1, 2]}
    (broken / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="input_profile"):
        TFLiteClassifier.from_dir(broken)


def test_the_api_and_drop_to_label_service_applies_the_distribution_check(profiled_model):
    """`InferenceService.predict` answers POST /predict and drop-to-label: both see the profile's verdict."""
    from medimage.inference.cache import LocalModelSource, ModelCache
    from medimage.inference.service import InferenceService
    from medimage.inference.settings import InferenceSettings

    source = LocalModelSource(profiled_model / "model.tflite", "chestxray2017")
    service = InferenceService(ModelCache(source), InferenceSettings(("chestxray2017",), "chestxray2017"))
    for explain in (False, True):
        blank = service.predict(png(np.full((64, 64), 250)), explain=explain)
        assert blank.needs_review and blank.review_reason == "outside_training_distribution"
        ordinary = service.predict(png(noisy_grey(500)), explain=explain)
        assert not ordinary.needs_review and ordinary.review_reason is None
