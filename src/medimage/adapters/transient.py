"""Which AWS failures are worth retrying later: they surface to Step Functions as ``TransientError``.

boto3 already retries throttling and 5xx responses a few times inside one call (``adapters.aws``). When
those retries are exhausted the Lambda fails; naming the failure ``TransientError`` (the Lambda
``errorType`` is the exception's class name) lets the state machine's Retry wait and try the task again,
while a real bug or bad input (any other error) goes straight to the failure path.

Transient: every throttling code of the services the pipeline calls (S3 ``SlowDown``, DynamoDB
``ProvisionedThroughputExceededException``, SQS ``RequestThrottled``, Step Functions and SageMaker
``ThrottlingException``, ...), every server error (``InternalError``, ``InternalServerError``,
``InternalFailure``, ``ServiceUnavailable``, or any 500/502/503/504 answer), request timeouts, and the
connection failures and read timeouts botocore raises without an answer (a read timeout may hide a write
that happened: only idempotent or conditional writes may be retried, which is what the adapters do).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from botocore.exceptions import ClientError, ConnectionError, HTTPClientError

from medimage.core.errors import MedimageError

THROTTLING_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "ProvisionedThroughputExceededException",
        "TransactionInProgressException",
        "BandwidthLimitExceeded",
        "PriorRequestNotComplete",
    }
)
SERVER_ERROR_CODES = frozenset(
    {
        "InternalError",
        "InternalServerError",
        "InternalFailure",
        "InternalServiceError",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "RequestTimeout",
        "RequestTimeoutException",
        "500",
        "502",
        "503",
        "504",
    }
)
TRANSIENT_STATUS = frozenset({500, 502, 503, 504})
_TRANSIENT_CODES = THROTTLING_CODES | SERVER_ERROR_CODES


class TransientError(MedimageError):
    code = "transient"


def is_transient(exc: BaseException) -> bool:
    """Throttling, a server error or a lost connection / read timeout: the same call may succeed later."""
    if isinstance(exc, ConnectionError | HTTPClientError):
        return True
    if not isinstance(exc, ClientError):
        return False
    if exc.response.get("Error", {}).get("Code") in _TRANSIENT_CODES:
        return True
    return exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") in TRANSIENT_STATUS


@contextmanager
def transient_aws_errors(doing: str) -> Iterator[None]:
    """Re-raise retryable AWS failures as TransientError (saying what was being done)."""
    try:
        yield
    except (ClientError, ConnectionError, HTTPClientError) as exc:
        if is_transient(exc):
            raise TransientError(f"{doing}: {exc}") from exc
        raise
