"""Which AWS failures are worth retrying later: they surface to Step Functions as ``TransientError``.

boto3 already retries throttling and 5xx responses a few times inside one call (``adapters.aws``). When
those retries are exhausted the Lambda fails; naming the failure ``TransientError`` (the Lambda
``errorType`` is the exception's class name) lets the state machine's Retry wait and try the task again,
while a real bug or bad input (any other error) goes straight to the failure path.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from botocore.exceptions import ClientError, ConnectionError, ReadTimeoutError

from medimage.core.errors import MedimageError

_TRANSIENT_CODES = frozenset(
    {
        "SlowDown",
        "InternalError",
        "ServiceUnavailable",
        "RequestTimeout",
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "503",
        "500",
    }
)


class TransientError(MedimageError):
    code = "transient"


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, ConnectionError | ReadTimeoutError):
        return True
    return isinstance(exc, ClientError) and exc.response.get("Error", {}).get("Code") in _TRANSIENT_CODES


@contextmanager
def transient_aws_errors(doing: str) -> Iterator[None]:
    """Re-raise retryable AWS failures as TransientError (saying what was being done)."""
    try:
        yield
    except (ClientError, ConnectionError, ReadTimeoutError) as exc:
        if is_transient(exc):
            raise TransientError(f"{doing}: {exc}") from exc
        raise
