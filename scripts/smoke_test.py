"""Smoke test of a deployed stack (the delivery workflow runs it after each deploy) or of `medimage up`:
GET /health, one POST /predict signed as the stage's API requires, and one drop-to-label round trip.

  python scripts/smoke_test.py --stack medimage-dev --dataset chestxray2017        # a deployed stack
  python scripts/smoke_test.py --stack-json up-output/stack.json --dataset chestxray2017 --auth none

The dataset needs a production model. Auth: `api-key` reads the stack's InferenceApiKeyId output and asks
API Gateway for the key; `iam` signs with SigV4 (the runner's credentials); `auto` (default) picks
`api-key` when the stack has that output, else `iam`. Prints one JSON line; exits 1 on the first failure.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from typing import Any

from medimage.core import layout
from medimage.ops.stack import client, stack_name, stack_outputs, use_stack_json


class SmokeFailure(Exception):
    """A check of the smoke test failed; the message says which and what came back."""


@dataclass(frozen=True)
class Target:
    api_url: str  # ends with "/"
    bucket: str
    region: str
    api_key_id: str | None


def find_target(args: argparse.Namespace) -> Target:
    if args.stack_json:
        stack = use_stack_json(args.stack_json)
        return Target(
            stack["api_url"].rstrip("/") + "/", stack["bucket"], stack.get("region", "us-east-1"), None
        )
    outputs = stack_outputs(stack_name(args.stack, args.config_env))
    region = client("cloudformation").meta.region_name
    url = outputs["InferenceApiUrl"].rstrip("/") + "/"
    return Target(url, outputs["DataBucketName"], region, outputs.get("InferenceApiKeyId"))


def smoke_image() -> bytes:
    """A small gray JPEG: the smoke test checks the wiring, not the model."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.linear_gradient("L").resize((96, 96)).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def signed_headers(
    target: Target, auth: str, url: str, body: bytes, headers: dict[str, str]
) -> dict[str, str]:
    """The headers of a POST /predict the stage's API accepts."""
    if auth == "none":
        return headers
    if auth == "api-key":
        if not target.api_key_id:
            raise SmokeFailure("--auth api-key: the stack has no InferenceApiKeyId output")
        key = client("apigateway").get_api_key(apiKey=target.api_key_id, includeValue=True)["value"]
        return {**headers, "x-api-key": key}
    import boto3
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    request = AWSRequest(method="POST", url=url, data=body, headers=headers)
    credentials = boto3.Session().get_credentials().get_frozen_credentials()
    SigV4Auth(credentials, "execute-api", target.region).add_auth(request)
    return dict(request.headers.items())


def http(url: str, data: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=data, headers=headers or {}, method="POST" if data else "GET")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def check_health(target: Target) -> None:
    status, body = http(target.api_url + "health")
    if status != 200:
        raise SmokeFailure(f"GET /health answered {status}: {body[:300]!r}")


def check_predict(target: Target, dataset: str, auth: str, image: bytes) -> dict[str, Any]:
    url = f"{target.api_url}predict?dataset={dataset}"
    headers = signed_headers(target, auth, url, image, {"Content-Type": "image/jpeg"})
    status, body = http(url, image, headers)
    if status != 200:
        raise SmokeFailure(f"POST /predict answered {status}: {body[:300]!r}")
    answer = json.loads(body)
    if not answer.get("label") or not answer.get("model_version"):
        raise SmokeFailure(f"POST /predict answered without a label or model version: {answer}")
    return answer


def check_drop_to_label(target: Target, dataset: str, image: bytes, timeout_s: float) -> dict[str, Any]:
    s3 = client("s3")
    key = f"{layout.UNLABELED_PREFIX}{dataset}/smoke-{uuid.uuid4().hex[:12]}.jpeg"
    s3.put_object(Bucket=target.bucket, Key=key, Body=image, ContentType="image/jpeg")
    wanted = layout.prediction_key(dataset, key)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            result = json.loads(s3.get_object(Bucket=target.bucket, Key=wanted)["Body"].read())
        except s3.exceptions.NoSuchKey:
            time.sleep(2)
            continue
        if not result.get("label"):
            raise SmokeFailure(f"s3://{target.bucket}/{wanted} has no label: {result}")
        return result
    raise SmokeFailure(f"no prediction at s3://{target.bucket}/{wanted} after {timeout_s:.0f} s")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--stack", help="stack name (default: stack_name of --config-env in samconfig.toml)")
    parser.add_argument("--config-env", default="default", help="samconfig.toml environment")
    parser.add_argument("--stack-json", help="stack.json of `medimage up` instead of a deployed stack")
    parser.add_argument("--auth", choices=["auto", "iam", "api-key", "none"], default="auto")
    parser.add_argument(
        "--timeout", type=float, default=180, help="seconds to wait for the drop's prediction"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        target = find_target(args)
        auth = args.auth if args.auth != "auto" else ("api-key" if target.api_key_id else "iam")
        image = smoke_image()
        check_health(target)
        predicted = check_predict(target, args.dataset, auth, image)
        dropped = check_drop_to_label(target, args.dataset, image, args.timeout)
    except SmokeFailure as exc:
        print(f"smoke test FAILED: {exc}", file=sys.stderr)
        return 1
    summary = {
        "api": target.api_url,
        "auth": auth,
        "health": "ok",
        "predict": {"label": predicted["label"], "model_version": predicted["model_version"]},
        "drop_to_label": {"label": dropped["label"]},
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
