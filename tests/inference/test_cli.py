"""`medimage predict` and `medimage serve` (HTTP and the upload page in headless Chromium)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from medimage.cli.main import main

from .conftest import DATASET, LABELS, fullres_images, jpeg_bytes

CHROMIUM = Path("/usr/bin/chromium")


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


@pytest.fixture
def server(model_v1: Path) -> Iterator[str]:
    """`medimage serve --model` on a free port of 127.0.0.1; yields its base URL."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [
        sys.executable,
        "-m",
        "medimage.cli.main",
        "serve",
        "--model",
        str(model_v1 / "model.tflite"),
        "--port",
        "0",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert "http://" in line, f"serve did not start: {line!r}"
        yield line.split("http://", 1)[1].split("/", 1)[0].join(["http://", "/"])
    finally:
        proc.terminate()
        proc.wait(timeout=10)


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


@pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is absent: run `make browser-deps`")
def test_upload_page_in_headless_chromium(server, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip package playwright (extra 'dev')")
    image = sample_image(tmp_path)
    expected = post(server + "predict", image.read_bytes(), "image/jpeg")[1]["label"]
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
            ],
        )
        try:
            page = browser.new_page()
            page.goto(server, wait_until="load")
            page.set_input_files("#image", str(image))
            page.wait_for_function(
                "document.getElementById('label').dataset.state !== 'busy' && "
                "document.getElementById('label').dataset.state !== 'idle'",
                timeout=30_000,
            )
            assert page.get_attribute("#label", "data-state") == "done", page.text_content("#error")
            assert page.text_content("#label") == expected
            assert "%" in page.text_content("#probabilities")
        finally:
            browser.close()
