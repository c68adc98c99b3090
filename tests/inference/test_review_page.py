"""The review worklist of the page in headless Chromium, against `medimage serve` on a local S3 endpoint
(moto in server mode) holding a production model and two queued items: one is confirmed, the other given
another label; both land in incoming/labeled/ with the reviewer the local API gateway took from the page's
API key. The screenshot is kept in build/test-artifacts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
import pytest

from medimage.core.layout import prediction_key, review_json_key, review_key
from medimage.core.presets import get_preset
from medimage.inference.review import labeled_key_for
from medimage.local.account import CREDENTIALS, REGION
from medimage.local.apigateway import local_api_key_id

from .conftest import DATASET, fullres_images, jpeg_bytes, publish
from .test_cli import ARTIFACTS, CHROMIUM

BUCKET = "medimage-review-page"
API_KEY = "ward-7-clinician"
# (name, the model's label, its confidence): listed least confident first.
QUEUED = [("person6_virus_2.jpeg", "viral", 0.58), ("person5_bacteria_1.jpeg", "bacterial", 0.41)]


@contextmanager
def s3_endpoint() -> Iterator[str]:
    """moto in server mode on a free loopback port, as `medimage up` runs it."""
    from moto.moto_server.threaded_moto_server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def queue_item(s3: Any, name: str, label: str, confidence: float, data: bytes) -> None:
    """An item as drop-to-label leaves it: the image in review/, its result beside it and in predictions/."""
    source = f"incoming/unlabeled/{DATASET}/{name}"
    others = [c for c in ("normal", "bacterial", "viral") if c != label]
    probabilities = {label: confidence, others[0]: round(0.6 * (1 - confidence), 6)}
    probabilities[others[1]] = round(1 - confidence - probabilities[others[0]], 6)
    record = {
        "key": source,
        "dataset": DATASET,
        "file": name,
        "label": label,
        "probabilities": probabilities,
        "confidence": confidence,
        "needs_review": True,
        "review_reason": "low_confidence",
        "review_key": review_key(DATASET, name),
        "model_version": "v1",
        "predicted_at": "2026-12-06T09:00:00+00:00",
    }
    s3.put_object(Bucket=BUCKET, Key=review_key(DATASET, name), Body=data)
    for key in (review_json_key(DATASET, name), prediction_key(DATASET, source)):
        s3.put_object(Bucket=BUCKET, Key=key, Body=json.dumps(record).encode())


@contextmanager
def serving_bucket(endpoint: str, cache_dir: Path) -> Iterator[str]:
    """`medimage serve --dataset D --bucket B`: the production model and the queue read from the endpoint."""
    env = {
        **os.environ,
        **CREDENTIALS,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ENDPOINT_URL": endpoint,
        "MODEL_CACHE_DIR": str(cache_dir),
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("MEDIMAGE_MODEL", None)
    cmd = [sys.executable, "-m", "medimage.cli.main", "serve", "--dataset", DATASET, "--bucket", BUCKET]
    proc = subprocess.Popen(
        [*cmd, "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env
    )
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert "http://" in line, f"serve did not start: {line!r}"
        yield line.split("http://", 1)[1].split("/", 1)[0].join(["http://", "/"])
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def xrays(tmp_path: Path) -> list[bytes]:
    images = fullres_images()
    if len(images) >= 2:
        return [images[0].read_bytes(), images[-1].read_bytes()]
    return [jpeg_bytes((320, 256), seed=1), jpeg_bytes((300, 280), seed=2)]


@pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is absent: run `make browser-deps`")
def test_review_worklist_in_headless_chromium(model_v1, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip package playwright (extra 'dev')")
    with s3_endpoint() as endpoint:
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name=REGION, **_client_credentials())
        s3.create_bucket(Bucket=BUCKET)
        publish(s3, model_v1, "v1", bucket=BUCKET)
        for (name, label, confidence), data in zip(QUEUED, xrays(tmp_path), strict=True):
            queue_item(s3, name, label, confidence, data)
        with serving_bucket(endpoint, tmp_path / "models") as url, sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM),
                args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
            )
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 1000})
                page.goto(url, wait_until="load")
                work_the_queue(page, ARTIFACTS / "review-worklist.png")
                done = ARTIFACTS / "review-worklist-done.png"
                page.locator("#review").screenshot(path=str(done))
                assert done.stat().st_size > 10_000
            finally:
                browser.close()
        check_the_bucket(s3)


def _client_credentials() -> dict[str, str]:
    return {
        "aws_access_key_id": CREDENTIALS["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    }


def rcard(page, name: str):  # type: ignore[no-untyped-def]
    return page.locator(".rcard", has=page.locator(".name", has_text=name))


def work_the_queue(page, shot: Path) -> None:  # type: ignore[no-untyped-def]
    """Load the queue with the API key, check each card (``shot``: a screenshot of them), confirm the least
    confident, give the other another label."""
    page.click("#review-load")  # without the key: the API's auth names no one
    page.wait_for_function("document.getElementById('review-summary').dataset.state === 'error'")
    assert "no_identity" in (page.text_content("#review-summary") or "")
    page.fill("#apikey", API_KEY)
    page.click("#review-load")
    page.wait_for_function(
        "document.getElementById('review-summary').dataset.state === 'done'", timeout=60_000
    )
    assert page.text_content("#review-summary") == (
        f"2 of 2 image(s) wait for review in {DATASET} (least confident first)"
    )
    names = page.locator(".rcard").evaluate_all("cards => cards.map(c => c.dataset.name)")
    assert names == ["person5_bacteria_1.jpeg", "person6_virus_2.jpeg"]
    for name, label, confidence in QUEUED:
        card = rcard(page, name)
        assert card.get_attribute("data-state") == "ready"
        assert card.locator(".label").text_content() == label
        assert f"{100 * confidence:.1f} %" in (card.locator(".confidence").text_content() or "")
        assert card.locator(".fill").count() == 3
        heat = card.locator("img.heat")
        assert heat.evaluate("e => e.complete && e.naturalWidth >= 64")
        assert card.locator("img.xray").evaluate("e => e.complete && e.naturalWidth > 0")
        assert heat.bounding_box() == pytest.approx(card.locator("img.xray").bounding_box(), abs=1.5)
        assert card.locator(".confirm").text_content() == f"Confirm {label}"
        options = card.locator("select.relabel option").evaluate_all("os => os.map(o => o.value)")
        assert options == [c for c in ("normal", "bacterial", "viral") if c != label]
    shot.parent.mkdir(parents=True, exist_ok=True)
    page.locator("#review").screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000

    sure = rcard(page, "person5_bacteria_1.jpeg")
    sure.locator(".confirm").click()
    page.wait_for_function(
        "document.querySelector('.rcard[data-name=\"person5_bacteria_1.jpeg\"]').dataset.state === 'labelled'"
    )
    other = rcard(page, "person6_virus_2.jpeg")
    other.locator("select.relabel").select_option("normal")
    other.locator(".give").click()
    page.wait_for_function(
        "document.querySelector('.rcard[data-name=\"person6_virus_2.jpeg\"]').dataset.state === 'labelled'"
    )
    reviewer = f"api-key:{local_api_key_id(API_KEY)}"
    assert sure.get_attribute("data-verdict") == "accepted"
    assert other.get_attribute("data-verdict") == "modified"
    assert f"by {reviewer}" in (sure.locator(".outcome").text_content() or "")
    assert "Labelled normal (modified)" in (other.locator(".outcome").text_content() or "")
    assert page.text_content("#review-summary", timeout=5_000).startswith("0 of 2 image(s)")


def check_the_bucket(s3: Any) -> None:
    reviewer = f"api-key:{local_api_key_id(API_KEY)}"
    preset = get_preset(DATASET)
    for (name, model_label, _), (label, verdict) in zip(
        QUEUED, [("normal", "modified"), ("bacterial", "accepted")], strict=True
    ):
        target = labeled_key_for(preset, DATASET, name, label)
        assert s3.head_object(Bucket=BUCKET, Key=target)["ContentLength"] > 1000
        source = f"incoming/unlabeled/{DATASET}/{name}"
        result = json.loads(s3.get_object(Bucket=BUCKET, Key=prediction_key(DATASET, source))["Body"].read())
        assert result["label"] == model_label  # the AI's answer stays as it was
        assert result["review"]["reviewer"] == reviewer and result["review"]["verdict"] == verdict
        assert result["review"]["labeled_key"] == target
    assert s3.list_objects_v2(Bucket=BUCKET, Prefix="review/")["KeyCount"] == 0
