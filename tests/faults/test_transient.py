"""Which AWS failures the pipeline retries: every throttle and server error each service really answers
(as the fault injector produces them in the service's own wire format), request timeouts and read timeouts
are transient; a missing object, a refused condition or bad input is not."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError, ReadTimeoutError

from harness.faults.injector import FaultInjector
from harness.faults.plan import SERVER_ERRORS, THROTTLES, FaultKind, FaultRule
from medimage.adapters.transient import TransientError, is_transient, transient_aws_errors
from medimage.local.account import REGION

NO_RETRIES = Config(retries={"max_attempts": 1, "mode": "standard"})

# One cheap call per service; what the call does is irrelevant, the injected answer replaces it.
CALLS: dict[str, Callable[[Any], Any]] = {
    "s3": lambda c: c.put_object(Bucket="fault-bucket", Key="k", Body=b"x"),
    "dynamodb": lambda c: c.put_item(TableName="t", Item={"k": {"S": "v"}}),
    "sqs": lambda c: c.send_message(
        QueueUrl="https://sqs.us-east-1.amazonaws.com/000000000000/q", MessageBody="m"
    ),
    "stepfunctions": lambda c: c.start_execution(
        stateMachineArn="arn:aws:states:us-east-1:000000000000:stateMachine:m"
    ),
    "sagemaker": lambda c: c.describe_training_job(TrainingJobName="job"),
}


@pytest.fixture
def mocked() -> Iterator[None]:
    from moto import mock_aws

    with mock_aws():
        yield


def failure_of(service: str, kind: FaultKind) -> BaseException:
    rule = FaultRule(service=service, rate=1.0, kinds=(kind,))
    with FaultInjector([rule], seed=1), pytest.raises((ClientError, ReadTimeoutError)) as caught:
        # Made inside: a client copies the session's event handlers when it is created.
        CALLS[service](boto3.client(service, region_name=REGION, config=NO_RETRIES))
    return caught.value


@pytest.mark.parametrize("service", sorted(CALLS))
@pytest.mark.parametrize("kind", [FaultKind.THROTTLE, FaultKind.ERROR])
def test_every_throttle_and_server_error_a_service_answers_is_transient(mocked, service, kind):
    exc = failure_of(service, kind)
    expected = (THROTTLES if kind is FaultKind.THROTTLE else SERVER_ERRORS)[service][0]
    assert isinstance(exc, ClientError) and exc.response["Error"]["Code"] == expected
    assert is_transient(exc), f"{service} answering {expected} must be retried"


def test_a_read_timeout_after_the_write_is_transient_and_the_write_happened(mocked):
    boto3.client("s3", region_name=REGION).create_bucket(Bucket="fault-bucket")
    exc = failure_of("s3", FaultKind.TIMEOUT_AFTER_WRITE)
    assert isinstance(exc, ReadTimeoutError) and is_transient(exc)
    stored = boto3.client("s3", region_name=REGION).get_object(Bucket="fault-bucket", Key="k")
    assert stored["Body"].read() == b"x"


def client_error(code: str, status: int = 400) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Op"
    )


@pytest.mark.parametrize(
    "code",
    [
        "SlowDown",
        "ThrottlingException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "ServiceUnavailable",
        "ProvisionedThroughputExceededException",
        "InternalServerError",
        "InternalFailure",
        "RequestThrottled",
        "RequestTimeout",
    ],
)
def test_named_codes_are_transient(code):
    assert is_transient(client_error(code))


def test_any_5xx_answer_is_transient_whatever_its_code():
    assert is_transient(client_error("SomethingNew", 502))


@pytest.mark.parametrize(
    "code",
    [
        "NoSuchKey",
        "AccessDenied",
        "ConditionalCheckFailedException",
        "PreconditionFailed",
        "ValidationException",
    ],
)
def test_refusals_and_bad_requests_are_not_transient(code):
    assert not is_transient(client_error(code))


def test_connection_failures_and_timeouts_without_an_answer_are_transient():
    assert is_transient(ReadTimeoutError(endpoint_url="http://x"))
    assert is_transient(ConnectionClosedError(endpoint_url="http://x"))
    assert is_transient(EndpointConnectionError(endpoint_url="http://x"))
    with pytest.raises(TransientError, match="writing k"), transient_aws_errors("writing k"):
        raise client_error("InternalFailure", 500)
    with pytest.raises(ClientError), transient_aws_errors("reading k"):
        raise client_error("AccessDenied", 403)
