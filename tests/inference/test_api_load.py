"""`medimage serve` under 50 concurrent clients for a few seconds: good and bad requests mixed, every one
answered (no 5xx, no client timeout) with the status the API contract gives its kind."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from harness.benchmarking.api_load import request_mix, run_load, send, serving

CLIENTS = 50


def generated_images(count: int = 6) -> list[bytes]:
    rng = np.random.default_rng(7)
    out = []
    for i in range(count):
        buffer = io.BytesIO()
        pixels = rng.integers(0, 256, (96 + 16 * i, 96), dtype=np.uint8)
        Image.fromarray(pixels, "L").save(buffer, format="PNG" if i % 2 else "JPEG")
        out.append(buffer.getvalue())
    return out


@pytest.fixture(scope="module")
def url(model_v1: Path):
    with serving(model_v1 / "model.tflite") as base_url:
        yield base_url


def test_fifty_clients_mixing_good_and_bad_requests_are_all_answered(url):
    mix = request_mix(generated_images(), too_large_bytes=4_500_000)
    assert send(url, mix[0], 30).status == 200  # warm: the model loads outside the measured run
    run = run_load(url, mix, clients=CLIENTS, duration_s=3.0, timeout_s=30.0)
    summary = run.summary()
    assert summary["requests"] >= CLIENTS, summary
    assert summary["server_errors_5xx"] == 0, summary
    assert summary["unanswered"] == 0, summary
    assert summary["unexpected_status"] == 0, summary
    assert set(summary["by_kind"]) == {k.kind for k in mix}, "every kind of request was sent"
    assert summary["latency_ms"]["p95"] < 30_000


def test_a_stalled_client_does_not_hold_the_others(url):
    """A client that sends headers and then nothing keeps its own connection only."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as stalled:
        stalled.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
        mix = request_mix(generated_images(2))
        run = run_load(url, mix, clients=CLIENTS, max_requests=CLIENTS * 2, duration_s=None, timeout_s=10.0)
    summary = run.summary()
    assert summary["unanswered"] == 0 and summary["unexpected_status"] == 0, summary
