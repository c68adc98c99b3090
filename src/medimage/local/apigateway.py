"""API Gateway's REST proxy integration, locally: an HTTP request becomes the event Lambda receives.

Used by `medimage serve`, `medimage up`, the benchmarks and the demo, so each exercises the real
handler with the event shape the deployed API sends; ``make_http_handler`` is the HTTP side that
`serve` and `up` share.

The caller's identity lands where the deployed API's auth (template ``InferenceApiAuth``) puts it
(`caller_identity`): an ``x-api-key`` header as API-key auth does (``identity.apiKey``/``apiKeyId``), a
SigV4 ``Authorization`` header as IAM auth does (``identity.accessKey``/``caller``/``userArn``). Nothing
is verified locally: the key and the signature are taken as they come.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import json
import logging
import sys
import time
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from medimage.inference.api import BINARY_MEDIA_TYPES
from medimage.local.account import ACCOUNT


def is_binary(content_type: str | None) -> bool:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return any(fnmatch.fnmatch(media, pattern) for pattern in BINARY_MEDIA_TYPES)


def local_api_key_id(api_key: str) -> str:
    """The id API Gateway would give a key, made up locally from the key itself (stable across runs)."""
    return "local-" + hashlib.sha256(api_key.encode("utf-8")).hexdigest()[:10]


def caller_identity(headers: dict[str, str]) -> dict[str, str | None]:
    """``requestContext.identity``'s auth fields of a request, as API Gateway's API-key or IAM auth fills
    them; all None for a request with neither."""
    lower = {k.lower(): v for k, v in headers.items()}
    api_key = (lower.get("x-api-key") or "").strip()
    access_key = None
    authorization = lower.get("authorization") or ""
    if authorization.startswith("AWS4-HMAC-SHA256 ") and "Credential=" in authorization:
        access_key = authorization.split("Credential=", 1)[1].split("/", 1)[0].strip() or None
    return {
        "apiKey": api_key or None,
        "apiKeyId": local_api_key_id(api_key) if api_key else None,
        "accessKey": access_key,
        "caller": access_key,
        # The principal is not looked up locally: the key id names it.
        "userArn": f"arn:aws:iam::{ACCOUNT}:user/{access_key}" if access_key else None,
    }


def to_proxy_event(
    method: str, raw_path: str, headers: dict[str, str], body: bytes, source_ip: str = "127.0.0.1"
) -> dict[str, Any]:
    """An HTTP request as API Gateway's REST proxy integration hands it to Lambda."""
    parts = urlsplit(raw_path)
    multi_query = parse_qs(parts.query, keep_blank_values=True)
    content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), None)
    binary = is_binary(content_type)
    if not body:
        payload: str | None = None
    elif binary:
        payload = base64.b64encode(body).decode("ascii")
    else:
        payload = body.decode("utf-8", errors="replace")
    now = time.time()
    return {
        "resource": parts.path,
        "path": parts.path,
        "httpMethod": method,
        "headers": dict(headers),
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": {k: v[-1] for k, v in multi_query.items()} or None,
        "multiValueQueryStringParameters": multi_query or None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "accountId": ACCOUNT,
            "apiId": "local",
            "resourceId": "local",
            "stage": "local",
            "requestId": str(uuid.uuid4()),
            "requestTime": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "requestTimeEpoch": int(now * 1000),
            "identity": {
                "sourceIp": source_ip,
                "userAgent": headers.get("User-Agent", ""),
                **caller_identity(headers),
            },
            "path": parts.path,
            "resourcePath": parts.path,
            "httpMethod": method,
            "protocol": "HTTP/1.1",
        },
        "body": payload,
        "isBase64Encoded": bool(payload) and binary,
    }


MAX_API_BODY = 10 * 1024 * 1024  # API Gateway's own payload limit
ProxyInvoke = Callable[[dict[str, Any]], dict[str, Any]]
log = logging.getLogger("medimage.local")


def make_http_handler(
    invoke: ProxyInvoke, server_version: str = "medimage-serve"
) -> type[BaseHTTPRequestHandler]:
    """An HTTP handler that passes each request to ``invoke`` as a proxy event and writes its response
    back; a handler that raises answers 502, as API Gateway does for a failed integration."""

    class ProxyHandler(BaseHTTPRequestHandler):
        def _proxy(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_API_BODY:
                self._send(413, {"Content-Type": "application/json"}, b'{"message": "Request Too Long"}')
                return
            body = self.rfile.read(length) if length else b""
            event = to_proxy_event(
                self.command, self.path, dict(self.headers.items()), body, self.client_address[0]
            )
            try:
                result = invoke(event)
            except Exception as exc:
                log.error("%s %s: the integration failed", self.command, self.path, exc_info=exc)
                message = json.dumps({"message": "Internal server error"}).encode()
                self._send(502, {"Content-Type": "application/json"}, message)
                return
            out = result.get("body") or ""
            data = base64.b64decode(out) if result.get("isBase64Encoded") else out.encode("utf-8")
            headers = dict(result.get("headers") or {})
            for key, values in (result.get("multiValueHeaders") or {}).items():
                headers.setdefault(key, ", ".join(values))
            self._send(int(result["statusCode"]), headers, data)

        def _send(self, status: int, headers: dict[str, str], data: bytes) -> None:
            self.send_response(status)
            for key, value in headers.items():
                if key.lower() != "content-length":
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = _proxy

        def log_message(self, format: str, *args: Any) -> None:
            sys.stderr.write(f"{self.address_string()} {format % args}\n")

    ProxyHandler.server_version = server_version
    return ProxyHandler
