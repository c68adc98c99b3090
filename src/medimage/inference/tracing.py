"""The handler's tracer: Powertools' X-Ray Tracer when tracing is on, a no-op otherwise.

Powertools' ``Tracer`` imports the X-Ray SDK, and with it botocore, even when tracing is disabled: about
0.2 s of every cold start. With ``POWERTOOLS_TRACE_DISABLED`` set (local runs, benchmarks, `medimage
serve`) the same decorators are plain pass-throughs, and the SDK is never imported.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])
_FALSE = {"0", "false", "no", "off", ""}


def tracing_enabled(env: dict[str, str] | os._Environ[str] = os.environ) -> bool:
    """As Powertools reads it: tracing is on unless POWERTOOLS_TRACE_DISABLED says otherwise."""
    return env.get("POWERTOOLS_TRACE_DISABLED", "false").strip().lower() in _FALSE


class NoTracer:
    """The part of Powertools' Tracer the handler uses, doing nothing."""

    def capture_method(self, method: F) -> F:
        return method

    def capture_lambda_handler(self, handler: F) -> F:
        return handler


def make_tracer() -> Any:
    if not tracing_enabled():
        return NoTracer()
    from aws_lambda_powertools import Tracer

    return Tracer()
