"""API Gateway's REST proxy integration, locally: an HTTP request becomes the event Lambda receives.

Used by `medimage serve`, `medimage bench` and the demo, so each exercises the real handler with the
event shape the deployed API sends.
"""

from __future__ import annotations

import base64
import fnmatch
import time
import uuid
from typing import Any
from urllib.parse import parse_qs, urlsplit

from medimage.inference.api import BINARY_MEDIA_TYPES
from medimage.local.account import ACCOUNT


def is_binary(content_type: str | None) -> bool:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return any(fnmatch.fnmatch(media, pattern) for pattern in BINARY_MEDIA_TYPES)


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
            "identity": {"sourceIp": source_ip, "userAgent": headers.get("User-Agent", "")},
            "path": parts.path,
            "resourcePath": parts.path,
            "httpMethod": method,
            "protocol": "HTTP/1.1",
        },
        "body": payload,
        "isBase64Encoded": bool(payload) and binary,
    }
