"""A deployed stack as the CLI sees it: its name (samconfig.toml), its outputs, and AWS errors as one line.

The commands that talk to real AWS (`ingest`, `pipeline`, `deploy`) find the bucket and the state machine
here, so an explicit flag, an environment variable and the stack output agree on one order of precedence.
A local stack (`medimage up`) is the same to them: its endpoint goes to boto3's own ``AWS_ENDPOINT_URL``
and its stack.json fills in what the stack outputs would.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from medimage.checkout import checkout_root
from medimage.core.errors import AwsProblem

DEFAULT_STACK = "medimage"
BUCKET_ENV = "MEDIMAGE_BUCKET"
STATE_MACHINE_ENV = "MEDIMAGE_STATE_MACHINE_ARN"
STACK_ENV = "MEDIMAGE_STACK"
ENDPOINT_ENV = "AWS_ENDPOINT_URL"  # boto3's own setting: every client made afterwards uses it
# What `medimage up`'s stack.json holds, by the environment variable each stands in for.
BULK_IMPORT_ENV = "MEDIMAGE_BULK_IMPORT_ARN"
_STACK_JSON_ENV = {
    "bucket": BUCKET_ENV,
    "state_machine_arn": STATE_MACHINE_ENV,
    "bulk_import_state_machine_arn": BULK_IMPORT_ENV,
    "endpoint_url": ENDPOINT_ENV,
}
_CREDENTIAL_CODES = {
    "ExpiredToken",
    "ExpiredTokenException",
    "InvalidClientTokenId",
    "UnrecognizedClientException",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
}


def samconfig_stack_name(config_env: str = "default", root: Path | None = None) -> str | None:
    """``stack_name`` of a samconfig.toml environment (``<env>.global.parameters`` or ``<env>.deploy``)."""
    root = root or checkout_root()
    if root is None or not (root / "samconfig.toml").is_file():
        return None
    with (root / "samconfig.toml").open("rb") as fh:
        config = tomllib.load(fh)
    env = config.get(config_env) or {}
    for command in ("global", "deploy"):
        name = ((env.get(command) or {}).get("parameters") or {}).get("stack_name")
        if name:
            return str(name)
    return None


def use_endpoint(endpoint_url: str) -> None:
    """Every AWS client made from now on talks to ``endpoint_url`` (``--endpoint-url``)."""
    if not endpoint_url.startswith(("http://", "https://")):
        raise ValueError(f"--endpoint-url {endpoint_url!r}: expected http://HOST:PORT or https://...")
    os.environ[ENDPOINT_ENV] = endpoint_url


def use_stack_json(path: Path) -> dict[str, Any]:
    """Take the endpoint, region, bucket and state machine from `medimage up`'s stack.json. It names an
    emulated account, so moto's dummy credentials fill in when none are set."""
    try:
        stack = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"--stack-json {path}: cannot read it ({exc}); is `medimage up` running?") from None
    if not isinstance(stack, dict) or not stack.get("endpoint_url") or not stack.get("bucket"):
        raise ValueError(f"--stack-json {path}: not a stack.json of `medimage up` (no endpoint_url, bucket)")
    for key, env_var in _STACK_JSON_ENV.items():
        if stack.get(key):
            os.environ[env_var] = str(stack[key])
    if stack.get("region"):
        os.environ["AWS_DEFAULT_REGION"] = str(stack["region"])
    if not os.environ.get("AWS_ACCESS_KEY_ID"):
        os.environ["AWS_ACCESS_KEY_ID"] = os.environ["AWS_SECRET_ACCESS_KEY"] = "testing"
    return stack


def stack_name(explicit: str | None, config_env: str = "default", root: Path | None = None) -> str:
    return explicit or os.environ.get(STACK_ENV) or samconfig_stack_name(config_env, root) or DEFAULT_STACK


def describe(exc: BaseException) -> str:
    """One line for an AWS error, with what to do about the usual ones."""
    from botocore.exceptions import (
        ClientError,
        EndpointConnectionError,
        NoCredentialsError,
        NoRegionError,
        PartialCredentialsError,
        ProfileNotFound,
    )

    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return (
            "no AWS credentials: set AWS_PROFILE (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY), "
            "or run `aws configure` / `aws sso login`"
        )
    if isinstance(exc, ProfileNotFound):
        return f"AWS profile not found: {exc}"
    if isinstance(exc, NoRegionError):
        return "no AWS region: set AWS_REGION (or AWS_DEFAULT_REGION), or use a profile that names one"
    if isinstance(exc, EndpointConnectionError):
        return f"cannot reach AWS: {exc}"
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        code, message = str(err.get("Code", "")), str(err.get("Message", "")) or str(exc)
        op = exc.operation_name
        if code in {"NoSuchBucket"}:
            bucket = err.get("BucketName")
            where = f"bucket {bucket!r}" if bucket else "the bucket"
            return f"{where} does not exist (check --bucket, ${BUCKET_ENV} or the stack's DataBucketName)"
        if code in {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "403"}:
            return f"access denied ({op}): {message}"
        if code in _CREDENTIAL_CODES:
            return f"AWS credentials rejected ({code}): {message}"
        return f"{op} failed ({code}): {message}"
    return str(exc)


@contextmanager
def aws_errors() -> Iterator[None]:
    """Turn botocore errors into AwsProblem, which `medimage` prints as one line."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except (BotoCoreError, ClientError) as exc:
        raise AwsProblem(describe(exc)) from exc


def stack_outputs(name: str, cfn: Any | None = None) -> dict[str, str]:
    """The outputs of a deployed stack, by key."""
    from botocore.exceptions import ClientError

    cfn = cfn or client("cloudformation")
    try:
        stacks = cfn.describe_stacks(StackName=name)["Stacks"]
    except ClientError as exc:
        if "does not exist" in str(exc):
            region = cfn.meta.region_name
            raise AwsProblem(
                f"stack {name!r} not found in {region}: deploy it with `medimage deploy`, or pass --stack "
                f"(or --bucket / --state-machine)"
            ) from exc
        raise
    return {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}


def resolve_output(
    explicit: str | None, env_var: str, output_key: str, stack: str | None, config_env: str = "default"
) -> str:
    """A flag, else an environment variable, else the stack output ``output_key``."""
    if explicit:
        return explicit
    if os.environ.get(env_var):
        return os.environ[env_var]
    name = stack_name(stack, config_env)
    with aws_errors():
        outputs = stack_outputs(name)
    if not outputs.get(output_key):
        raise AwsProblem(f"stack {name!r} has no output {output_key}: is it a medimage stack?")
    return outputs[output_key]


def client(service: str, max_pool_connections: int = 10) -> Any:
    """A boto3 client with standard retries; the S3 pool is sized to the upload workers."""
    import boto3
    from botocore.config import Config

    config = Config(
        retries={"max_attempts": 5, "mode": "standard"}, max_pool_connections=max_pool_connections
    )
    with aws_errors():
        return boto3.client(service, config=config)
