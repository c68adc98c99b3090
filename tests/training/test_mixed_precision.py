"""The int8 model keeps its worst-rounded layers float: ranking, the ladder, and what the graph holds."""

from __future__ import annotations

import io

import numpy as np
import pytest

from harness.models import tiny_keras_model
from medimage.core.errors import ExportError
from medimage.inference.model import resolve_interpreter
from medimage.training import export, mixed_precision
from medimage.training.mixed_precision import MixedPrecision, layer_label, ranked_layers, top1_agreement

SIZE = 24


class DumpingDebugger:
    """The debugger's statistics dump, as the converter writes it (only the columns read here)."""

    def __init__(self, rows: list[tuple[str, float, float]]) -> None:
        self.rows = rows

    def layer_statistics_dump(self, file: io.StringIO) -> None:
        file.write("op_name,tensor_name,mean_squared_error,scale\n")
        for name, mse, scale in self.rows:
            file.write(f"CONV_2D,{name},{mse},{scale}\n")


def test_layers_are_ranked_by_their_error_in_quantisation_steps_and_float_ones_are_left_out():
    debugger = DumpingDebugger(
        [
            ("net/a", 0.04, 1.0),  # 0.2 steps
            ("net/b", 0.04, 0.1),  # 2 steps: small absolute error, but coarse for its range
            ("net/c", 1.0, 2.0),  # 0.5 steps
            ("net/head", 5.0, 0.0),  # already float: no scale
        ]
    )
    assert ranked_layers(debugger) == ["net/b", "net/c", "net/a"]


def test_a_converter_tensor_name_reads_as_its_keras_layer():
    name = "net_logits_1/block_13_project_BN_1/batchnorm/add_1;net_logits_1/block_13_project_1/convolution"
    assert layer_label(name) == "block_13_project_BN"
    assert layer_label("plain") == "plain"


def test_the_agreement_set_is_each_image_clean_then_under_every_shift():
    from medimage.evaluation.shifts import SHIFTS

    base = images(3, seed=4)
    checked = mixed_precision.agreement_images(base)
    assert checked.shape == (3 * (1 + len(SHIFTS)), SIZE, SIZE, 1) and checked.dtype == np.float32
    np.testing.assert_array_equal(checked[:3], base)
    assert all(not np.array_equal(checked[3 * (i + 1) : 3 * (i + 2)], base) for i in range(len(SHIFTS)))


def images(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    out = []
    for _ in range(n):
        cy, cx = rng.integers(4, SIZE - 4, 2)
        blob = 200.0 * (((yy - cy) ** 2 + (xx - cx) ** 2) < rng.integers(4, 30))
        out.append(np.clip(blob + rng.normal(40, 25, (SIZE, SIZE)), 0, 255))
    return np.stack(out)[..., None].astype(np.float32)


@pytest.fixture(scope="module")
def model():
    return tiny_keras_model(["a", "b", "c"], image_size=SIZE, seed=5, filters=6, convs=3, padding="same")


def keras_logits(model, x: np.ndarray) -> np.ndarray:
    return export.logits_model(model).predict(x, verbose=0)


@pytest.mark.slow
def test_the_layers_named_float_stay_float_and_the_rest_is_int8(model):
    calibration = images(60, seed=1)
    debugger = export.int8_debugger(model, calibration, samples=40)
    debugger.run()
    all_int8 = export.to_tflite_int8(model, calibration, samples=40)
    ranked = [name for name in ranked_layers(debugger) if name in export.tensor_names(all_int8)[1]]
    assert len(ranked) >= 3
    content = export.to_tflite_int8(model, calibration, samples=40, float_layers=ranked[:2])
    names, quantised = export.tensor_names(content)
    assert set(ranked) <= names
    assert not set(ranked[:2]) & quantised
    assert set(ranked[2:]) <= quantised


@pytest.mark.slow
def test_a_float_layer_the_graph_does_not_have_is_an_error(model):
    with pytest.raises(ExportError, match="meant to stay float are quantised or not in the graph"):
        export.to_tflite_int8(model, images(20, seed=1), samples=20, float_layers=["no/such/layer"])


@pytest.mark.slow
def test_the_ladder_stops_at_the_first_rung_that_agrees_enough(model):
    calibration = images(120, seed=2)
    interpreter = resolve_interpreter()
    easy = mixed_precision.quantize_mixed(model, calibration, 40, 0, interpreter, target=0.0)
    assert easy.float_layers == () and list(easy.tried) == [0]

    impossible = mixed_precision.quantize_mixed(
        model, calibration, 40, 0, interpreter, target=1.01, ladder=(0, 1, 2, 64)
    )
    ranked_count = max(impossible.tried)
    assert list(impossible.tried)[:3] == [0, 1, 2] and ranked_count < 64  # the last rung: every layer
    assert impossible.agreement == max(impossible.tried.values())
    assert len(impossible.float_layers) in impossible.tried
    assert impossible.agreement == impossible.tried[len(impossible.float_layers)]
    # with every quantised layer float, the int8 file answers as Keras does on the unseen images
    assert impossible.tried[ranked_count] == 1.0

    # the agreement is measured on training images calibration did not see, against Keras' own answers
    _, unseen = export.calibration_order(len(calibration), 40, 0)
    held = mixed_precision.agreement_images(calibration[np.sort(unseen[: mixed_precision.AGREEMENT_IMAGES])])
    chosen = MixedPrecision(impossible.content, impossible.float_layers, impossible.agreement)
    assert top1_agreement(chosen.content, held, keras_logits(model, held), interpreter) == chosen.agreement
    report = chosen.to_dict()
    assert report["training_agreement"] == round(chosen.agreement, 6)
    assert len(report["float_layers"]) == len(chosen.float_layers)


def test_the_agreement_asked_for_leaves_no_more_disagreement_than_parity_allows_to_be_lost() -> None:
    from medimage.training.package import INT8_PARITY

    assert 1.0 - INT8_PARITY["accuracy"] <= mixed_precision.AGREEMENT_TARGET
