"""boto3 clients, created once per process (a Lambda container) and reused.

The endpoint comes from boto3's own ``AWS_ENDPOINT_URL`` setting, so a test can point every function at
an emulated AWS on loopback without any code path of its own.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3
from botocore.config import Config

_CONFIG = Config(retries={"max_attempts": 5, "mode": "standard"})


@cache
def client(service: str) -> Any:
    return boto3.client(service, config=_CONFIG)


def reset_clients() -> None:
    """Forget cached clients (tests that switch between emulated accounts)."""
    client.cache_clear()
