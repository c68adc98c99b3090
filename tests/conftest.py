"""Fixtures shared by every test folder: paths, events, synthetic images and the emulated AWS."""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from medimage.local.account import CREDENTIALS, REGION

REPO = Path(__file__).resolve().parents[1]
EVENTS = REPO / "events"
SHARED_DATA = Path(os.environ.get("MEDIMAGE_SHARED_DATA", REPO.parent / "shared" / "data"))
EVENT_BUCKET = "medimage-data-example"
# The ImageNet weights as `make test` exports them, for a run started without make.
if (SHARED_DATA / "pretrained").is_dir():
    os.environ.setdefault("MEDIMAGE_PRETRAINED_DIR", str(SHARED_DATA / "pretrained"))

# Fake credentials before anything creates a boto3 client: no test may reach real AWS.
for _key, _value in {
    **CREDENTIALS,
    "AWS_DEFAULT_REGION": REGION,
    "POWERTOOLS_METRICS_DISABLED": "true",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "TF_CPP_MIN_LOG_LEVEL": "2",
}.items():
    os.environ[_key] = _value
os.environ.pop("AWS_ENDPOINT_URL", None)
os.environ.pop("AWS_PROFILE", None)


def load_event(name: str, bucket: str | None = None) -> dict[str, Any]:
    """An event from events/, with the example bucket name replaced by the test's bucket."""
    text = (EVENTS / name).read_text(encoding="utf-8")
    if bucket:
        text = text.replace(EVENT_BUCKET, bucket)
    return json.loads(text)


@pytest.fixture(name="load_event")
def load_event_fixture():
    return load_event


@pytest.fixture
def shared_data() -> Path:
    return SHARED_DATA


def require_real_data(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"real data folder {path} is absent (set MEDIMAGE_SHARED_DATA to use it)")
    return path


@pytest.fixture
def real_data():
    """``real_data("chestxray2017-224-train")``: the folder in ../shared/data, or a skip with the reason."""
    return require_real_data


@pytest.fixture(autouse=True)
def _inference_log_format_restored() -> Iterator[None]:
    """A test that puts the inference function's logger in Lambda's JSON log format (the local runtime,
    `apply_json_log_format`) leaves it as it found it: later tests' stdout stays theirs."""
    import logging

    from medimage.inference.telemetry import SERVICE

    logger = logging.getLogger(SERVICE)
    level, handlers = logger.level, list(logger.handlers)
    yield
    logger.setLevel(level)
    logger.handlers = handlers


@pytest.fixture
def local_aws() -> Iterator[Any]:
    """The template's resources in moto (no state machine execution: executions are only recorded)."""
    from moto import mock_aws

    from medimage.local.environment import LocalAws

    with mock_aws():
        yield LocalAws().create()


def deep_copy(value: Any) -> Any:
    return copy.deepcopy(value)


@pytest.fixture
def service_log() -> Iterator[Any]:
    """``service_log(logger)`` -> a StringIO receiving what a function's Powertools ``Logger`` writes, in its
    JSON format. Powertools binds its handler to the stdout of the moment the logger was first made, which
    capsys may have replaced and closed since, and keeps that logger's level (the in-process demo sets
    WARNING): a handler of our own, at INFO while attached, sees every line whatever ran before."""
    import io
    import logging

    attached: list[tuple[logging.Logger, logging.Handler, int]] = []

    def attach(powertools_logger: Any) -> io.StringIO:
        logger = powertools_logger._logger  # the logging.Logger behind Powertools' Logger
        buffer = io.StringIO()
        handler = logging.StreamHandler(buffer)
        handler.setFormatter(powertools_logger.registered_formatter)
        # Loggers of one service are one logging.Logger: the demo's quiet WARNING level may still be on it.
        attached.append((logger, handler, logger.level))
        logger.setLevel(logging.INFO)
        logger.addHandler(handler)
        return buffer

    yield attach
    for logger, handler, level in attached:
        logger.removeHandler(handler)
        logger.setLevel(level)
