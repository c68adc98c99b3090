"""What the fault injector may do to an AWS call, and what it records.

A fault is drawn per attempt (every HTTP send botocore makes, retries included) from the rules that match
the call's service and operation. Three kinds reach botocore as a real service would answer:

- ``error``: a 5xx answer (``InternalError``, ``InternalServerError``, ...); nothing was done.
- ``throttle``: the service's throttling code (``SlowDown`` 503 for S3, ``ProvisionedThroughputExceeded``
  for DynamoDB, ``ThrottlingException``...) with a ``Retry-After`` header; nothing was done.
- ``timeout_after_write``: the request reached the service and was applied, then the client saw a read
  timeout (only for operations that change something). The nastiest case: a retry repeats a write that
  already happened.

botocore's ``standard`` retry mode (``medimage.adapters.aws``: 5 attempts) retries all three: throttling
codes and 500/502/503/504 answers by their code and status, a read timeout as a transient connection
error. So a fault that is not repeated on the retry costs a back-off sleep, and the project's own code
sees it only when every attempt failed (or when the retry of a timed-out write meets its own write: a
412, a ConditionalCheckFailed, an ExecutionAlreadyExists).

``crash`` is the fourth kind: after the Nth AWS call of a function's invocation, the next call raises
`SimulatedCrash` (a BaseException, which no handler code catches), as if the process died there.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class FaultKind(StrEnum):
    ERROR = "error"
    THROTTLE = "throttle"
    TIMEOUT_AFTER_WRITE = "timeout_after_write"
    CRASH = "crash"


# The services the injector knows, by boto3 name; botocore's event names use the service id ("sfn").
SERVICES = ("s3", "dynamodb", "sqs", "stepfunctions", "sagemaker")
_SERVICE_OF_ID = {"sfn": "stepfunctions"}

# (code, HTTP status) of a server error and of throttling, as each service answers them.
SERVER_ERRORS = {
    "s3": ("InternalError", 500),
    "dynamodb": ("InternalServerError", 500),
    "sqs": ("InternalError", 500),
    "stepfunctions": ("ServiceUnavailable", 503),
    "sagemaker": ("InternalFailure", 500),
}
THROTTLES = {
    "s3": ("SlowDown", 503),
    "dynamodb": ("ProvisionedThroughputExceededException", 400),
    "sqs": ("RequestThrottled", 400),
    "stepfunctions": ("ThrottlingException", 400),
    "sagemaker": ("ThrottlingException", 400),
}

# Operations that change state: only these get ``timeout_after_write`` (a read that timed out is a plain
# transient error). Lists are of the operations the pipeline and the local emulation call.
WRITES = {
    "s3": frozenset({"PutObject", "CopyObject", "DeleteObject", "DeleteObjects", "UploadPart"}),
    "dynamodb": frozenset({"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem"}),
    "sqs": frozenset({"SendMessage", "SendMessageBatch", "DeleteMessage", "DeleteMessageBatch"}),
    "stepfunctions": frozenset({"StartExecution"}),
    "sagemaker": frozenset({"CreateTrainingJob"}),
}


def service_of(service_id: str) -> str:
    """boto3's name for botocore's service id (``sfn`` -> ``stepfunctions``)."""
    return _SERVICE_OF_ID.get(service_id, service_id)


def is_write(service: str, operation: str) -> bool:
    return operation in WRITES.get(service, frozenset())


@dataclass(frozen=True)
class FaultRule:
    """Fault ``rate`` of the attempts of ``service``/``operation`` ("*": any) with one of ``kinds``
    (drawn uniformly; ``timeout_after_write`` falls back to ``error`` on a read), at most ``limit``
    times in all (None: no limit), so a test can fail exactly the first attempt of a call.

    ``function``: None, any call; "*", only calls made inside a function invocation (`FaultInjector.wrap`),
    not those of the emulation around them (its pollers, the Step Functions interpreter); a logical id,
    only that function's calls."""

    service: str = "*"
    operation: str = "*"
    rate: float = 0.1
    kinds: tuple[FaultKind, ...] = (FaultKind.ERROR, FaultKind.THROTTLE, FaultKind.TIMEOUT_AFTER_WRITE)
    retry_after_s: int = 1
    limit: int | None = None
    function: str | None = None

    def matches(self, service: str, operation: str, function: str | None = None) -> bool:
        if self.function is not None and (function is None or self.function not in ("*", function)):
            return False
        return self.service in ("*", service) and self.operation in ("*", operation)


@dataclass(frozen=True)
class CrashRule:
    """Crash ``function`` (its logical id, "*": any) after its ``after_calls``-th AWS call, in the first
    ``times`` invocations that get that far."""

    function: str = "*"
    after_calls: int = 1
    times: int = 1


# The request parameters that name resources or set condition keys: what a recorded call keeps of its
# request (object bodies never), and what the IAM checks build ARNs and condition keys from.
RESOURCE_PARAMS = (
    "Bucket",
    "Key",
    "VersionId",
    "CopySource",
    "Prefix",
    "TableName",
    "IndexName",
    "QueueUrl",
    "QueueName",
    "stateMachineArn",
    "executionArn",
    "name",
    "TopicArn",
    "KeyId",
    "TrainingJobName",
)


def summarize(params: Mapping[str, Any]) -> dict[str, str]:
    """The resource names of a call's API parameters as strings; ``CopySource`` as S3 writes it
    (``bucket/key[?versionId=v]``)."""
    out: dict[str, str] = {}
    for name in RESOURCE_PARAMS:
        if name not in params:
            continue
        value = params[name]
        if name == "CopySource" and isinstance(value, Mapping) and "Bucket" in value and "Key" in value:
            text = f"{value['Bucket']}/{value['Key']}"
            value = f"{text}?versionId={value['VersionId']}" if value.get("VersionId") else text
        out[name] = str(value)
    return out


@dataclass(frozen=True)
class RecordedCall:
    """One API call as the caller made it (retries are not new calls). ``function``: the handler whose
    invocation made it, when known. ``params_summary``: the resource names (bucket, key, table, queue,
    state machine) without any object body."""

    service: str
    operation: str
    params_summary: dict[str, str]
    function: str | None = None

    @property
    def iam_action(self) -> str:
        """The IAM action of the call (``s3:PutObject``, ``states:StartExecution``)."""
        prefix = {"stepfunctions": "states"}.get(self.service, self.service)
        return f"{prefix}:{self.operation}"


@dataclass(frozen=True)
class RecordedFault:
    service: str
    operation: str
    kind: FaultKind
    code: str
    function: str | None = None
