"""Class-activation maps: the export's second output is the hand-computed CAM, in float and in int8."""

from __future__ import annotations

import numpy as np
import pytest

from harness.models import tiny_keras_model
from medimage.core.preprocess import PreprocessSpec
from medimage.inference.model import TFLiteClassifier
from medimage.training import export

pytestmark = pytest.mark.slow

SIZE = 16


def tiny_model(seed: int = 0):
    """Conv -> global average pooling -> Dense softmax: the head shape the CAM export relies on; "same"
    padding, so the maps are exactly half the input's size."""
    return tiny_keras_model(["a", "b", "c"], image_size=SIZE, seed=seed, padding="same")


def images(n: int = 12, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    out = []
    for _ in range(n):
        cy, cx = rng.integers(3, SIZE - 3, 2)
        blob = 220.0 * (((yy - cy) ** 2 + (xx - cx) ** 2) < 9)
        out.append(np.clip(blob + rng.normal(20, 10, (SIZE, SIZE)), 0, 255))
    return np.stack(out)[..., None].astype(np.float32)


def classifier(content: bytes, outputs: str) -> TFLiteClassifier:
    spec = PreprocessSpec(image_size=SIZE, channels=1)
    return TFLiteClassifier(content, ["a", "b", "c"], spec, {}, outputs)


def hand_cam(model, image: np.ndarray) -> np.ndarray:
    """The last feature map weighted by the Dense weights, plus the bias: per-cell logits."""
    import keras

    features = keras.Model(model.inputs, model.get_layer("features").output)(image[None])[0].numpy()
    weights, bias = model.get_layer("probabilities").get_weights()
    return np.einsum("hwk,kc->hwc", features, weights) + bias


def test_the_float_export_carries_the_hand_computed_class_activation_maps():
    model = tiny_model()
    served = classifier(export.to_tflite_float(model), "probabilities")
    assert served.supports_explain and served.heatmap_shape == (SIZE // 2, SIZE // 2)
    for image in images(4):
        probs, cam = served.run(image, explain=True)
        expected = hand_cam(model, image)
        np.testing.assert_allclose(cam, expected, atol=1e-4)
        # the spatial mean of the maps is the logits, whose softmax is the answer
        logits = cam.mean(axis=(0, 1))
        np.testing.assert_allclose(probs, np.exp(logits) / np.exp(logits).sum(), atol=1e-5)
        np.testing.assert_allclose(probs, model(image[None]).numpy()[0], atol=1e-5)


def test_without_explain_only_the_answer_is_read():
    served = classifier(export.to_tflite_float(tiny_model()), "probabilities")
    probs, cam = served.run(images(1)[0], explain=False)
    assert cam is None and probs.shape == (3,)


def test_the_int8_export_has_the_maps_too_and_they_agree_with_float():
    model = tiny_model()
    calibration = images(40, seed=2)
    float_served = classifier(export.to_tflite_float(model), "probabilities")
    int8_served = classifier(export.to_tflite_int8(model, calibration, samples=40), "logits")
    assert int8_served.supports_explain
    checked = images(12, seed=3)
    float_cams = np.stack([float_served.run(image, explain=True)[1] for image in checked])
    int8_cams = np.stack([int8_served.run(image, explain=True)[1] for image in checked])
    assert int8_cams.dtype == np.float32 and int8_cams.shape == float_cams.shape
    agreement = export.compare_cams(float_cams, int8_cams, export.CAM_INT8_TOLERANCE)
    assert agreement["within_tolerance"], agreement
    assert agreement["mean_correlation"] > 0.9


def test_compare_cams_flags_maps_that_disagree():
    rng = np.random.default_rng(0)
    maps = rng.normal(size=(6, 4, 4, 3))
    assert export.compare_cams(maps, maps, 0.01)["within_tolerance"]
    scrambled = export.compare_cams(maps, rng.normal(size=maps.shape), 0.05)
    assert not scrambled["within_tolerance"] and scrambled["mean_correlation"] < 0.9


def test_a_model_without_pooling_before_its_head_cannot_be_explained():
    import keras

    inputs = keras.Input((SIZE, SIZE, 1))
    x = keras.layers.Flatten()(inputs)
    outputs = keras.layers.Dense(2, activation="softmax", name="probabilities")(x)
    from medimage.core.errors import ExportError

    with pytest.raises(ExportError, match="GlobalAveragePooling2D"):
        export.explained_model(keras.Model(inputs, outputs))
