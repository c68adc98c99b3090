"""Error answers in each service's own wire format, so botocore parses them as the service's errors."""

from __future__ import annotations

import json
from collections.abc import Iterator

from botocore.awsrequest import AWSResponse

# The JSON protocol's error type prefix of each service (S3 answers XML instead).
_JSON_TARGETS = {
    "dynamodb": "com.amazonaws.dynamodb.v20120810",
    "sqs": "com.amazonaws.sqs",
    "stepfunctions": "com.amazonaws.swf.service.model",
    "sagemaker": "com.amazonaws.sagemaker",
}


class _Body:
    """The ``raw`` of an AWSResponse: botocore reads it through ``stream()``."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, **_: object) -> Iterator[bytes]:
        yield self._data


def error_response(
    service: str, url: str, code: str, status: int, message: str, retry_after_s: int | None = None
) -> AWSResponse:
    headers = {"x-amzn-requestid": "medimage-fault", "x-amz-request-id": "medimage-fault"}
    if retry_after_s is not None:
        headers["Retry-After"] = str(retry_after_s)
    if service == "s3":
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>'
            f"<Error><Code>{code}</Code><Message>{message}</Message>"
            "<RequestId>medimage-fault</RequestId></Error>"
        ).encode()
        headers["Content-Type"] = "application/xml"
    else:
        body = json.dumps(
            {"__type": f"{_JSON_TARGETS.get(service, service)}#{code}", "message": message}
        ).encode()
        headers["Content-Type"] = "application/x-amz-json-1.0"
        if service == "sqs":  # SQS is query-compatible: botocore takes the code from this header
            headers["x-amzn-query-error"] = f"{code};Receiver"
    return AWSResponse(url, status, headers, _Body(body))
