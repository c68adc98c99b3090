"""`medimage predict` and `medimage serve` (HTTP and the upload page in headless Chromium)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from PIL import Image

from medimage.cli.main import main
from medimage.inference.model import TFLiteClassifier

from .conftest import DATASET, LABELS, fullres_images, jpeg_bytes

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "build" / "test-artifacts"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


def sample_image(tmp_path: Path) -> Path:
    images = fullres_images()
    if images:
        return images[-1]
    path = tmp_path / "sample.jpeg"
    path.write_bytes(jpeg_bytes((320, 256)))
    return path


def test_predict_prints_one_json_line_per_image(model_v1, tmp_path, capsys):
    good = sample_image(tmp_path)
    bad = tmp_path / "notes.jpeg"
    bad.write_bytes(b"not an image at all")
    code = main(["predict", "--model", str(model_v1 / "model.tflite"), str(good), str(bad)])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 1 and len(lines) == 2
    assert lines[0]["image"] == str(good) and lines[0]["label"] in LABELS and lines[0]["latency_ms"] > 0
    assert lines[1]["error"]["code"] == "not_an_image"
    assert lines[0]["confidence"] == lines[0]["probabilities"][lines[0]["label"]]
    assert lines[0]["needs_review"] is False and lines[0]["review_reason"] is None  # no model threshold


def test_predict_with_a_review_threshold_and_heatmaps(model_v1, tmp_path, capsys):
    image = sample_image(tmp_path)
    maps = tmp_path / "maps"
    argv = ["predict", "--model", str(model_v1), "--review-threshold", "0.99", "--heatmaps", str(maps)]
    assert main([*argv, str(image)]) == 0
    [line] = [json.loads(text) for text in capsys.readouterr().out.splitlines()]
    assert line["needs_review"] is True and line["review_reason"] == "low_confidence"
    with Image.open(line["heatmap_png"]) as png:
        assert png.mode == "RGBA" and min(png.size) >= 64
        with Image.open(image) as original:
            assert abs(png.size[0] / png.size[1] - original.size[0] / original.size[1]) < 0.02
    assert main(["predict", "--model", str(model_v1), "--review-threshold", "2", str(image)]) == 2


@contextmanager
def serving(model: Path, *extra: str) -> Iterator[str]:
    """`medimage serve --model` on a free port of 127.0.0.1; yields its base URL."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "medimage.cli.main", "serve", "--model", str(model), "--port", "0", *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert "http://" in line, f"serve did not start: {line!r}"
        yield line.split("http://", 1)[1].split("/", 1)[0].join(["http://", "/"])
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def server(model_v1: Path) -> Iterator[str]:
    with serving(model_v1 / "model.tflite") as url:
        yield url


def post(url: str, data: bytes, content_type: str) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=data, method="POST", headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_serve_answers_like_the_deployed_api(server, tmp_path):
    image = sample_image(tmp_path).read_bytes()
    status, body = post(server + "predict", image, "image/jpeg")
    assert status == 200 and body["label"] in LABELS and body["model_version"].startswith("local-")
    status, body = post(server + "predict", b"plain text", "text/plain")
    assert status == 415 and body["error"]["code"] == "not_an_image"
    with urllib.request.urlopen(server + "health", timeout=10) as response:
        assert json.loads(response.read())["default_dataset"] == DATASET


def page_images(model: Path, tmp_path: Path) -> tuple[list[Path], float]:
    """Two X-rays (real ones where ../shared/data has them) and a review threshold between their
    confidences, so the page shows one sure answer and one that needs review."""
    candidates = fullres_images()
    if not candidates:
        for seed in range(4):
            path = tmp_path / f"synthetic-{seed}.jpeg"
            path.write_bytes(jpeg_bytes((320 + 40 * seed, 256), seed=seed))
            candidates.append(path)
    classifier = TFLiteClassifier.from_dir(model)
    confidence = {path: classifier.predict_bytes(path.read_bytes()).confidence for path in candidates}
    ranked = sorted(candidates, key=confidence.get)
    unsure, sure = ranked[0], ranked[-1]
    assert confidence[unsure] < confidence[sure]
    return [sure, unsure], (confidence[unsure] + confidence[sure]) / 2


@pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is absent: run `make browser-deps`")
def test_upload_page_in_headless_chromium(model_v1, tmp_path):
    """A worklist of two X-rays and one bad file: heatmap overlays, probability bars, confidence, the review
    banner on the unsure one, the model version and date; the screenshot is kept in build/test-artifacts."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip package playwright (extra 'dev')")
    (sure, unsure), threshold = page_images(model_v1, tmp_path)
    bad = tmp_path / "notes.jpeg"
    bad.write_bytes(b"not an image at all")
    with serving(model_v1, "--review-threshold", f"{threshold:.6f}") as url:
        expected = {
            path.name: post(url + "predict", path.read_bytes(), "image/jpeg")[1] for path in (sure, unsure)
        }
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                page.goto(url, wait_until="load")
                page.set_input_files("#image", [str(sure), str(unsure), str(bad)])
                page.wait_for_function(
                    "document.getElementById('summary').dataset.state === 'done'", timeout=60_000
                )
                assert page.text_content("#summary") == "3 image(s): 1 labelled, 1 need review, 1 failed"
                check_cards(page, expected, sure.name, unsure.name)
                check_overlay_controls(page)
                page.wait_for_function("document.getElementById('model').dataset.state === 'loaded'")
                model_line = page.text_content("#model") or ""
                assert "local-" in model_line and "2026-11-25" in model_line, model_line
                shot = ARTIFACTS / "upload-page.png"
                shot.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(shot), full_page=True)
                assert shot.stat().st_size > 10_000
            finally:
                browser.close()


@pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is absent: run `make browser-deps`")
def test_the_upload_page_names_each_labels_review_threshold(model_v1, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip package playwright (extra 'dev')")
    model = tmp_path / "model"
    shutil.copytree(model_v1, model)
    meta = json.loads((model / "model.json").read_text())
    meta["review"] = {"threshold": 0.9, "class_thresholds": {"normal": 0.97, "bacterial": 0.9, "viral": 0.92}}
    (model / "model.json").write_text(json.dumps(meta))
    with serving(model) as url, sync_api.sync_playwright() as playwright:
        assert post(url + "predict", jpeg_bytes(), "image/jpeg")[0] == 200  # the model loads on first use
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(url, wait_until="load")
            page.wait_for_function("document.getElementById('model').dataset.state === 'loaded'")
            threshold = page.text_content("#model .threshold") or ""
        finally:
            browser.close()
    assert threshold == "normal 97 %, bacterial 90 %, viral 92 %"


def card(page, name: str):  # type: ignore[no-untyped-def]
    return page.locator(".card", has=page.locator(".name", has_text=name))


def check_cards(page, expected: dict, sure: str, unsure: str) -> None:  # type: ignore[no-untyped-def]
    for name, answer in expected.items():
        item = card(page, name)
        assert item.get_attribute("data-state") == "done"
        assert item.locator(".label").text_content() == answer["label"]
        assert f"{100 * answer['confidence']:.1f} %" in (item.locator(".confidence").text_content() or "")
        widths = item.locator(".fill").evaluate_all("els => els.map(e => parseFloat(e.style.width))")
        assert sorted(widths, reverse=True) == pytest.approx(
            sorted((100 * p for p in answer["probabilities"].values()), reverse=True), abs=0.06
        )
        heat = item.locator("img.heat")
        width, height = heat.evaluate("e => [e.naturalWidth, e.naturalHeight]")
        shown = item.locator("img.xray").evaluate("e => [e.naturalWidth, e.naturalHeight]")
        assert min(width, height) >= 64 and abs(width / height - shown[0] / shown[1]) < 0.02
        box, under = heat.bounding_box(), item.locator("img.xray").bounding_box()
        assert box == pytest.approx(under, abs=1.5)  # laid exactly over the image
    assert card(page, unsure).get_attribute("data-review") == "true"
    assert "NEEDS REVIEW" in (card(page, unsure).locator(".banner").text_content() or "")
    assert card(page, unsure).locator(".banner").is_visible()
    assert card(page, sure).get_attribute("data-review") == "false"
    assert card(page, sure).locator(".banner").count() == 0
    failed = card(page, "notes.jpeg")
    assert failed.get_attribute("data-state") == "error"
    assert "not_an_image" in (failed.locator(".error").text_content() or "")


def check_overlay_controls(page) -> None:  # type: ignore[no-untyped-def]
    heat = page.locator(".card img.heat").first
    page.fill("#opacity", "30")
    assert heat.evaluate("e => getComputedStyle(e).opacity") == "0.3"
    page.uncheck("#overlay")
    assert heat.is_hidden()
    page.check("#overlay")
    page.fill("#opacity", "60")
    assert heat.is_visible()
