"""The cold start of the inference handler, measured as Lambda pays it: nothing but the standard library
modules that the Lambda runtime client itself has loaded (json, importlib) may be imported before the handler,
so the benchmark harness cannot pre-load anything the handler would otherwise import.

The runtime's part of the function's JSON log format is done here too, inside the timed window: the root
logger at the template's ``ApplicationLogLevel`` (INFO), each record written as a JSON line with its
``extra`` fields (to nowhere), so every log line the handler writes is paid for, cold and warm, as in Lambda.

``harness.benchmarking.inference`` runs :func:`first_answer` first thing in a fresh process, then the rest of
its measurements.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any


class BenchContext:
    """The attributes of the Lambda context object that the handler and Powertools read."""

    function_name = "medimage-bench"
    memory_limit_in_mb = 1024
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:medimage-bench"
    log_group_name = "/aws/lambda/medimage-bench"
    log_stream_name = "bench"

    aws_request_id = "00000000-0000-4000-8000-000000000001"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def lambda_json_logging() -> None:
    """The runtime's set-up of a function in the JSON log format, its lines thrown away."""
    from medimage.local.log_format import JsonLines

    handler = logging.StreamHandler(open(os.devnull, "w", encoding="utf-8"))  # noqa: SIM115
    handler.setFormatter(JsonLines(BenchContext.aws_request_id))
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(logging.INFO)


def first_answer(
    app_path: str, event_path: str, prepare: Callable[[ModuleType], object] | None = None
) -> tuple[ModuleType, dict[str, Any], float, float]:
    """Import the handler module from its file (then ``prepare`` it: another model runtime) and answer the
    first event: (module, response, import seconds, import + first answer seconds). The event file is read
    before the clock starts."""
    with open(event_path, encoding="utf-8") as handle:
        event = json.load(handle)
    started = time.perf_counter()
    lambda_json_logging()
    spec = importlib.util.spec_from_file_location("medimage_inference_app", app_path)
    if spec is None or spec.loader is None:
        raise FileNotFoundError(f"cannot import the inference handler from {app_path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    if prepare is not None:
        prepare(module)
    imported = time.perf_counter() - started
    response = module.lambda_handler(event, BenchContext())
    return module, response, imported, time.perf_counter() - started
