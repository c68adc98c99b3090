"""Confidence, review and the class-activation heatmap in the answers of POST /predict (moto S3)."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from medimage.inference import heatmap as heatmap_module
from medimage.inference.heatmap import MAX_SIDE, MIN_SIDE, overlay_size, render_heatmap
from medimage.inference.model import TFLiteClassifier
from medimage.inference.settings import InferenceSettings, parse_review_threshold
from medimage.inference.telemetry import PREDICTION
from medimage.local.functions import load_handler_module
from medimage.local.log_format import apply_json_log_format

from .conftest import DATASET, LABELS, api_event, call_api, jpeg_bytes, json_lines, publish


def heatmap_pixels(heatmap: dict) -> np.ndarray:
    image = Image.open(io.BytesIO(base64.b64decode(heatmap["png_base64"])))
    assert image.format == "PNG" and image.mode == "RGBA"
    assert image.size == (heatmap["width"], heatmap["height"])
    return np.asarray(image)


def assert_not_flat(pixels: np.ndarray) -> None:
    """The alpha channel follows the activation: a real map has hot and cold regions."""
    alpha = pixels[..., 3].astype(np.float64)
    assert alpha.max() - alpha.min() > 100 and alpha.std() > 10, (alpha.min(), alpha.max(), alpha.std())


def test_explain_adds_a_heatmap_at_the_uploads_aspect_ratio(handler, s3, model_v1):
    publish(s3, model_v1, "v1")
    upload = jpeg_bytes((300, 200), seed=3)
    plain = call_api(handler, api_event(upload))[1]
    status, body = call_api(handler, api_event(upload, query={"explain": "true"}))
    assert status == 200, body
    assert "heatmap" not in plain and "heatmap_error" not in body
    for key in ("label", "probabilities", "confidence", "needs_review", "review_reason"):
        assert body[key] == plain[key]  # explaining does not change the answer
    heatmap = body["heatmap"]
    assert (heatmap["width"], heatmap["height"]) == (256, 171)  # 300 x 200, longest side 256
    assert_not_flat(heatmap_pixels(heatmap))


def test_heatmap_of_a_real_xray_is_not_flat(handler, s3, model_v1, fullres_xray):
    publish(s3, model_v1, "v1")
    data = fullres_xray.read_bytes()
    width, height = Image.open(fullres_xray).size
    status, body = call_api(handler, api_event(data, query={"explain": "1"}))
    assert status == 200, body
    heatmap = body["heatmap"]
    assert min(heatmap["width"], heatmap["height"]) >= 64
    assert abs(heatmap["width"] / heatmap["height"] - width / height) < 0.02  # the square squeeze undone
    assert_not_flat(heatmap_pixels(heatmap))


def test_explain_in_a_json_body(handler, s3, model_v1):
    publish(s3, model_v1, "v1")
    doc = {"image": base64.b64encode(jpeg_bytes()).decode(), "explain": True}
    status, body = call_api(handler, api_event(json.dumps(doc), "application/json"))
    assert status == 200 and body["heatmap"]["png_base64"]


@pytest.mark.parametrize("value", ["false", "0", "no"])
def test_explain_off_answers_without_a_heatmap_key(handler, s3, model_v1, value):
    publish(s3, model_v1, "v1")
    status, body = call_api(handler, api_event(jpeg_bytes(), query={"explain": value}))
    assert status == 200 and "heatmap" not in body


def test_a_bad_explain_value_is_a_400(handler, s3, model_v1):
    publish(s3, model_v1, "v1")
    status, body = call_api(handler, api_event(jpeg_bytes(), query={"explain": "please"}))
    assert status == 400 and body["error"]["code"] == "bad_explain"


def test_a_model_without_activation_maps_answers_explain_with_a_reason(handler, s3, model_without_maps):
    publish(s3, model_without_maps, "old")
    status, body = call_api(handler, api_event(jpeg_bytes(), query={"explain": "true"}))
    assert status == 200 and body["label"] in LABELS
    assert body["heatmap"] is None and body["heatmap_error"]["code"] == "no_activation_maps"
    assert "old" in body["heatmap_error"]["message"]
    health = call_api(handler, api_event(None, None, method="GET", path="/health"))[1]
    assert health["datasets"][DATASET]["explain"] is False


def test_the_deployment_threshold_routes_unsure_answers_to_review(s3, model_v1, monkeypatch):
    publish(s3, model_v1, "v1")
    monkeypatch.setenv("REVIEW_THRESHOLD", "0.99")  # the untrained fixture is never that sure
    handler = load_handler_module()
    status, body = call_api(handler, api_event(jpeg_bytes()))
    assert status == 200
    assert body["needs_review"] is True and body["review_reason"] == "low_confidence"
    assert body["confidence"] < 0.99
    health = call_api(handler, api_event(None, None, method="GET", path="/health"))[1]
    assert health["datasets"][DATASET]["review_threshold"] == 0.99


def test_the_models_own_threshold_applies_without_an_override(s3, tmp_path, monkeypatch):
    from .conftest import build_model_dir

    model = build_model_dir(tmp_path / "sure", seed=1, review_threshold=0.99)
    meta = json.loads((model / "model.json").read_text())
    by_label = dict.fromkeys(LABELS, 0.99)
    meta["review"]["class_thresholds"] = by_label
    (model / "model.json").write_text(json.dumps(meta))
    publish(s3, model, "v1")
    handler = load_handler_module()
    assert call_api(handler, api_event(jpeg_bytes()))[1]["needs_review"] is True
    health = call_api(handler, api_event(None, None, method="GET", path="/health"))[1]
    assert health["datasets"][DATASET]["review_thresholds"] == by_label
    monkeypatch.setenv("REVIEW_THRESHOLD", "0")  # a deployment that reviews nothing
    handler = load_handler_module()
    assert call_api(handler, api_event(jpeg_bytes()))[1]["needs_review"] is False
    health = call_api(handler, api_event(None, None, method="GET", path="/health"))[1]
    assert health["datasets"][DATASET]["review_thresholds"] is None


@pytest.mark.parametrize(("threshold", "routed"), [("0.99", True), ("0", False)])
def test_the_prediction_line_says_whether_the_answer_was_routed_to_review(
    s3, model_v1, capsys, monkeypatch, threshold, routed
):
    """``NeedsReview`` is counted from this field of the line (the template's metric filters)."""
    monkeypatch.setenv("REVIEW_THRESHOLD", threshold)
    publish(s3, model_v1, "v7")
    handler = load_handler_module()
    apply_json_log_format(handler, "INFO")
    capsys.readouterr()
    call_api(handler, api_event(jpeg_bytes()))
    (line,) = [line for line in json_lines(capsys.readouterr().out) if line["message"] == PREDICTION]
    assert line["needs_review"] is routed
    assert (line["dataset"], line["model_version"]) == (DATASET, "v7")


@pytest.mark.parametrize(
    ("text", "expected"), [(None, None), ("", None), ("  ", None), ("0.9", 0.9), ("1", 1.0), ("0", 0.0)]
)
def test_review_threshold_setting(text, expected):
    assert parse_review_threshold(text) == expected


@pytest.mark.parametrize("text", ["high", "1.5", "-0.1"])
def test_a_bad_review_threshold_is_refused_at_start(text):
    with pytest.raises(ValueError, match="REVIEW_THRESHOLD"):
        InferenceSettings.from_env({"DEFAULT_DATASET": DATASET, "REVIEW_THRESHOLD": text})


@pytest.mark.parametrize(
    ("size", "expected"),
    [((1776, 1416), (256, 204)), ((100, 100), (256, 256)), ((2000, 100), (1024, 64)), ((30, 40), (192, 256))],
)
def test_overlay_size_keeps_the_aspect_ratio_and_the_minimum_side(size, expected):
    got = overlay_size(size)
    assert got == expected and min(got) >= MIN_SIDE and max(got) <= MAX_SIDE


def test_render_heatmap_puts_the_hot_cell_where_the_map_is_hot():
    cam = np.zeros((4, 4), np.float32)
    cam[0, 3] = 1.0  # top right
    pixels = np.asarray(Image.open(io.BytesIO(render_heatmap(cam, (400, 200)).png)))
    assert pixels.shape == (128, 256, 4)
    alpha = pixels[..., 3]
    assert alpha[:32, -64:].mean() > 4 * alpha[-32:, :64].mean()


def test_without_explain_no_map_is_read_or_rendered(handler, s3, model_v1, monkeypatch):
    asked: list[bool] = []
    run = TFLiteClassifier.run

    def spy(self: TFLiteClassifier, array: np.ndarray, explain: bool = False):  # type: ignore[no-untyped-def]
        asked.append(explain)
        return run(self, array, explain)

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a heatmap was rendered without explain")

    monkeypatch.setattr(TFLiteClassifier, "run", spy)
    monkeypatch.setattr(heatmap_module, "render_heatmap", refuse)
    publish(s3, model_v1, "v1")
    status, body = call_api(handler, api_event(jpeg_bytes()))
    assert status == 200 and "heatmap" not in body
    assert True not in asked


def test_a_plain_prediction_does_not_import_the_heatmap_renderer(model_v1):
    """The PNG encoder is imported on the first explain request only (the handler's cold start stays lean)."""
    script = (
        "import json, sys\n"
        "from medimage.inference.cache import LocalModelSource, ModelCache\n"
        "from medimage.inference.service import InferenceService\n"
        "from medimage.inference.settings import InferenceSettings\n"
        f"source = LocalModelSource({str(model_v1)!r}, 'chestxray2017')\n"
        "settings = InferenceSettings(('chestxray2017',), 'chestxray2017')\n"
        "service = InferenceService(ModelCache(source), settings)\n"
        "data = sys.stdin.buffer.read()\n"
        "service.predict(data)\n"
        "before = 'medimage.inference.heatmap' in sys.modules\n"
        "service.predict(data, explain=True)\n"
        "print(json.dumps([before, 'medimage.inference.heatmap' in sys.modules]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], input=jpeg_bytes(), capture_output=True, timeout=120, check=True
    )
    assert json.loads(done.stdout.decode().strip().splitlines()[-1]) == [False, True]
