"""tests/ops: training jobs from the SageMaker Python SDK and from the state machine, on moto.

The SDK runs in its own environment (.venv-sagemaker, `make sagemaker-install`, which `make test` makes
first): a test that needs it fails, not skips, when it is missing."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from medimage.template_file import load_template
from tests.ops.ops_helpers import REGION, TEMPLATE


@pytest.fixture(scope="session")
def template() -> dict[str, Any]:
    return load_template(TEMPLATE)


@pytest.fixture(scope="session")
def sdk_python() -> Path:
    """The SageMaker SDK's Python; a missing environment is a failure (make sagemaker-install)."""
    from medimage.ops.sagemaker_training import sdk_python

    return sdk_python()


@pytest.fixture
def moto_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """moto in server mode on loopback: the SDK's process reaches it through AWS_ENDPOINT_URL."""
    from moto.server import ThreadedMotoServer

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    for name in ("MEDIMAGE_BUCKET", "MEDIMAGE_STATE_MACHINE_ARN", "MEDIMAGE_STACK", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", url)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    # A server in this process shares moto's backends with every other: each test starts empty.
    requests.post(f"{url}/moto-api/reset", timeout=10).raise_for_status()
    try:
        yield url
    finally:
        requests.post(f"{url}/moto-api/reset", timeout=10)
        server.stop()
