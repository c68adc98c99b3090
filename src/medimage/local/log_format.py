"""Lambda's JSON log format, as the local runtime applies it to a function whose template says
``LoggingConfig.LogFormat: JSON``.

Lambda's Python runtime writes each record of the standard ``logging`` module as one JSON line, with the
record's ``extra`` fields, at the level ``ApplicationLogLevel`` names (``AWS_LAMBDA_LOG_LEVEL``). Here the
function module's ``logger`` gets that level and a handler writing the same JSON lines (`JsonLines`) to
whatever ``sys.stdout`` is when a record is written, so ``medimage up`` files them in ``lambda.log`` as
CloudWatch would, and a test's capture sees them. The inference benchmark formats with `JsonLines` too, so
that each line's cost is in its timings; this module imports nothing beyond the standard library for it.
"""

from __future__ import annotations

import json
import logging
import sys
from types import ModuleType
from typing import TextIO

# The runtime's level names (ApplicationLogLevel) -> logging's.
LEVELS = {"TRACE": logging.DEBUG, "DEBUG": logging.DEBUG, "INFO": logging.INFO, "WARN": logging.WARNING}
LEVELS |= {"ERROR": logging.ERROR, "FATAL": logging.CRITICAL}


# What a LogRecord holds of its own; everything else on it is an ``extra`` field.
_RECORD_FIELDS = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JsonLines(logging.Formatter):
    """A record as the Lambda runtime's JSON log format writes it: time, level, message, logger, the request
    id where one is given, then the ``extra`` fields."""

    def __init__(self, request_id: str | None = None) -> None:
        super().__init__()
        self.request_id = request_id

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "timestamp": self.formatTime(record),
            "level": record.levelname,
            "message": record.getMessage(),
            "logger": record.name,
        }
        if self.request_id is not None:
            line["requestId"] = self.request_id
        line.update((k, v) for k, v in record.__dict__.items() if k not in _RECORD_FIELDS and k not in line)
        if record.exc_info:
            line["stackTrace"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class StdoutHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes JSON lines to the ``sys.stdout`` of the moment, not of the handler's creation."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JsonLines())

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return sys.stdout

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass


def apply_json_log_format(module: ModuleType, level_name: str) -> None:
    """Give the module's ``logger`` the function's level and, once, the JSON line handler."""
    logger = getattr(module, "logger", None)
    if not isinstance(logger, logging.Logger):
        return
    logger.setLevel(LEVELS.get(level_name.upper(), logging.INFO))
    if not any(isinstance(h, StdoutHandler) for h in logger.handlers):
        logger.addHandler(StdoutHandler())
