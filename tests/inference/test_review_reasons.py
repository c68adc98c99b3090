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
from medimage.inference.model import TFLiteClassifier
from medimage.inference.review_policy import review_decision

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


def with_review(model_dir: Path, review: dict) -> Path:
    meta = json.loads((model_dir / "model.json").read_text())
    meta["review"] = review
    (model_dir / "model.json").write_text(json.dumps(meta))
    return model_dir


def test_each_label_is_held_to_its_own_threshold(tmp_path: Path) -> None:
    # GIVEN an image and the label and confidence the model gives it
    model_dir = build_model_dir(tmp_path / "model", seed=4)
    image = png(noisy_grey(7))
    first = TFLiteClassifier.from_dir(model_dir).predict_bytes(image)
    others = [label for label in first.probabilities if label != first.label]
    # WHEN that label's threshold is just above its confidence, every other label's at 0
    strict = {first.label: min(1.0, first.confidence + 1e-3), **dict.fromkeys(others, 0.0)}
    classifier = TFLiteClassifier.from_dir(
        with_review(model_dir, {"threshold": 0.0, "class_thresholds": strict})
    )
    # THEN the answer goes to review, though the single threshold would have let it through
    answer = classifier.predict_bytes(image)
    assert answer.needs_review and answer.review_reason == "low_confidence"
    assert classifier.review_policy == [strict[label] for label in classifier.labels]
    # AND with that label's threshold just below its confidence and every other at 1, it is labeled
    lenient = {first.label: first.confidence - 1e-3, **dict.fromkeys(others, 1.0)}
    classifier = TFLiteClassifier.from_dir(
        with_review(model_dir, {"threshold": 0.9, "class_thresholds": lenient})
    )
    assert not classifier.predict_bytes(image).needs_review
    # AND a deployment's one threshold replaces the model's by-label ones
    overridden = TFLiteClassifier.from_dir(model_dir, review_threshold=1.0)
    assert overridden.class_thresholds is None and overridden.review_policy == 1.0
    assert overridden.predict_bytes(image).needs_review


@pytest.mark.parametrize(
    ("class_thresholds", "message"),
    [
        ({"normal": 0.9}, "one threshold for each"),
        ({"normal": 0.9, "bacterial": 0.9, "viral": 1.5}, "not probabilities"),
        ([0.9, 0.9, 0.9], "one threshold for each"),
    ],
)
def test_class_thresholds_that_do_not_fit_the_labels_are_refused(
    tmp_path: Path, class_thresholds: object, message: str
) -> None:
    model_dir = with_review(
        build_model_dir(tmp_path / "model", seed=4), {"threshold": 0.9, "class_thresholds": class_thresholds}
    )
    with pytest.raises(ModelError, match=message):
        TFLiteClassifier.from_dir(model_dir)
