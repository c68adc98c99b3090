"""boto3 clients, created once per process (a Lambda container) and reused.

The endpoint comes from boto3's own ``AWS_ENDPOINT_URL`` setting, so a test can point every function at
an emulated AWS on loopback without any code path of its own.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

_CONFIG = Config(retries={"max_attempts": 5, "mode": "standard"})


@cache
def client(service: str) -> Any:
    return boto3.client(service, config=_CONFIG)


def reset_clients() -> None:
    """Forget cached clients (tests that switch between emulated accounts)."""
    client.cache_clear()


# The codes S3 answers for a missing object: GetObject says NoSuchKey, HeadObject only its status.
_NOT_FOUND = frozenset({"NoSuchKey", "404", "NotFound"})


def is_not_found(exc: BaseException) -> bool:
    """Whether an AWS error means "no such object" (the one rule every adapter uses)."""
    if not isinstance(exc, ClientError):
        return False
    error = exc.response.get("Error", {})
    return str(error.get("Code")) in _NOT_FOUND
