"""Lambda's JSON log format, as the local runtime applies it to a function whose template says
``LoggingConfig.LogFormat: JSON``.

Lambda's Python runtime writes each record of the standard ``logging`` module as one JSON line, with the
record's ``extra`` fields, at the level ``ApplicationLogLevel`` names (``AWS_LAMBDA_LOG_LEVEL``). Here the
function module's ``logger`` gets that level and a handler writing JSON lines (Powertools' formatter, the
same one the other functions' loggers use) to whatever ``sys.stdout`` is when a record is written, so
``medimage up`` files them in ``lambda.log`` as CloudWatch would, and a test's capture sees them.
"""

from __future__ import annotations

import logging
import sys
from types import ModuleType
from typing import TextIO

# The runtime's level names (ApplicationLogLevel) -> logging's.
LEVELS = {"TRACE": logging.DEBUG, "DEBUG": logging.DEBUG, "INFO": logging.INFO, "WARN": logging.WARNING}
LEVELS |= {"ERROR": logging.ERROR, "FATAL": logging.CRITICAL}


class StdoutHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to the ``sys.stdout`` of the moment, not of the handler's creation."""

    def __init__(self) -> None:
        super().__init__()
        from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter

        self.setFormatter(LambdaPowertoolsFormatter())

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
