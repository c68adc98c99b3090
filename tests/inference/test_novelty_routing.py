"""The novelty score in the served graph decides, before the confidence, whether an image may be labeled at
all: one far from the training images goes to review whatever its softmax says, and one that is not of the
model's kind is told apart from an unusual one in ``review_reason``."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from harness.models import tiny_keras_model
from medimage.core.errors import ModelError
from medimage.core.novelty import (
    FOREIGN_IMAGE,
    OUTSIDE_TRAINING_DISTRIBUTION,
    fit_class_gaussians,
    novelty_scores,
)
from medimage.core.preprocess import PreprocessSpec, load_image_array
from medimage.inference.model import Interpreter, TFLiteClassifier
from medimage.training.export import to_tflite_float, to_tflite_int8
from medimage.training.novelty import int8_gaussians, pooled_features

SIZE = 32


def png(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "L").save(buf, "PNG")
    return buf.getvalue()


def ordinary(seed: int) -> np.ndarray:
    """The 'training images' of this model: smooth vertical gradients with a little noise."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(rng.uniform(20, 60), rng.uniform(160, 220), SIZE)[:, None] * np.ones((1, SIZE))
    return ramp + rng.normal(0, 4, (SIZE, SIZE))


def checkerboard() -> np.ndarray:
    return (np.indices((SIZE, SIZE)).sum(axis=0) % 2) * 255.0


@pytest.fixture(scope="module")
def novelty_model(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A seeded tiny CNN with the novelty score fitted on 'ordinary' images, float and int8, and the scores
    the float model gives an ordinary image, a checkerboard and uniform noise."""
    out = tmp_path_factory.mktemp("novelty")
    model = tiny_keras_model(["a", "b"], image_size=SIZE, seed=5, filters=8)
    train = np.stack([ordinary(seed)[..., None] for seed in range(120)]).astype(np.float32)
    gaussians = fit_class_gaussians(pooled_features(model, train), np.arange(120) % 2, 2)
    (out / "model.tflite").write_bytes(to_tflite_float(model, novelty=gaussians))
    # As the trainer does: the int8 model's own Gaussian, fitted on a first conversion's activations
    first = to_tflite_int8(model, train, 60, novelty=gaussians)
    own = int8_gaussians(first, train, Interpreter)
    (out / "model-int8.tflite").write_bytes(to_tflite_int8(model, train, 60, novelty=own))
    (out / "labels.txt").write_text("a\nb\n")
    spec = PreprocessSpec(image_size=SIZE, channels=1)
    noise = np.random.default_rng(7).uniform(0, 255, (SIZE, SIZE))
    probes = {"ordinary": ordinary(999), "checkerboard": checkerboard(), "noise": noise}
    arrays = np.stack([load_image_array(png(p), spec) for p in probes.values()]).astype(np.float32)
    scores = dict(zip(probes, novelty_scores(pooled_features(model, arrays), gaussians), strict=True))
    return {"dir": out, "probes": probes, "scores": scores, "spec": spec}


def _write_meta(model_dir: Path, model_file: str, novelty: dict | None) -> None:
    meta = {
        "format_version": 1,
        "labels": ["a", "b"],
        "preprocess": PreprocessSpec(image_size=SIZE, channels=1).to_dict(),
        "model_file": model_file,
        "outputs": {"model.tflite": "probabilities", "model-int8.tflite": "logits"},
        "review": {"threshold": 0.0},
    }
    if novelty is not None:
        meta["novelty"] = novelty
    (model_dir / "model.json").write_text(json.dumps(meta))


def test_the_served_score_is_the_fitted_mahalanobis_distance(novelty_model: dict) -> None:
    _write_meta(novelty_model["dir"], "model.tflite", None)
    classifier = TFLiteClassifier.from_dir(novelty_model["dir"])
    for name, pixels in novelty_model["probes"].items():
        served = classifier.predict_bytes(png(pixels)).novelty
        assert served == pytest.approx(novelty_model["scores"][name], rel=1e-3), name
    # the training-like image is near the training images; the checkerboard and the noise are not
    scores = novelty_model["scores"]
    assert scores["ordinary"] < 3.0 < min(scores["checkerboard"], scores["noise"])


@pytest.mark.parametrize("model_file", ["model.tflite", "model-int8.tflite"])
def test_far_images_go_to_review_whatever_their_confidence_and_foreign_ones_say_so(
    novelty_model: dict, model_file: str
) -> None:
    # GIVEN the variant's own scores of the probes: the ordinary image lowest
    _write_meta(novelty_model["dir"], model_file, None)
    unjudged = TFLiteClassifier.from_dir(novelty_model["dir"])
    scores = {name: unjudged.predict_bytes(png(p)).novelty for name, p in novelty_model["probes"].items()}
    nearer, farther = sorted(["checkerboard", "noise"], key=lambda name: scores[name])
    assert scores["ordinary"] < scores[nearer] < scores[farther]
    # and thresholds between them (review threshold 0: the confidence alone would label everything)
    unusual = (scores["ordinary"] + scores[nearer]) / 2
    foreign = (scores[nearer] + scores[farther]) / 2
    _write_meta(
        novelty_model["dir"], model_file, {"unusual_threshold": unusual, "foreign_threshold": foreign}
    )
    classifier = TFLiteClassifier.from_dir(novelty_model["dir"])

    # WHEN each probe is served
    answers = {name: classifier.predict_bytes(png(p)) for name, p in novelty_model["probes"].items()}

    # THEN the ordinary image is labeled, the nearer far image is unusual, the farthest one foreign
    assert not answers["ordinary"].needs_review and answers["ordinary"].review_reason is None
    assert answers[nearer].needs_review and answers[nearer].review_reason == OUTSIDE_TRAINING_DISTRIBUTION
    assert answers[farther].needs_review and answers[farther].review_reason == FOREIGN_IMAGE
    assert answers[farther].to_dict()["novelty"] == answers[farther].novelty > foreign


def test_a_novelty_policy_without_the_output_is_a_model_error(tmp_path: Path) -> None:
    model = tiny_keras_model(["a", "b"], image_size=SIZE, seed=5, filters=8)
    (tmp_path / "model.tflite").write_bytes(to_tflite_float(model))
    (tmp_path / "labels.txt").write_text("a\nb\n")
    _write_meta(tmp_path, "model.tflite", {"unusual_threshold": 1.0, "foreign_threshold": 2.0})
    with pytest.raises(ModelError, match="no novelty output"):
        TFLiteClassifier.from_dir(tmp_path)


def test_thresholds_out_of_order_are_a_model_error(novelty_model: dict) -> None:
    _write_meta(novelty_model["dir"], "model.tflite", {"unusual_threshold": 5.0, "foreign_threshold": 2.0})
    with pytest.raises(ModelError, match="unusual"):
        TFLiteClassifier.from_dir(novelty_model["dir"])
    _write_meta(novelty_model["dir"], "model.tflite", {"unusual_threshold": 5.0})
    with pytest.raises(ModelError, match="foreign_threshold"):
        TFLiteClassifier.from_dir(novelty_model["dir"])
