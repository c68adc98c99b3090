"""The DICOMweb client of the PACS push (`medimage.results.pacs.DicomWebClient`): urllib.request, with
the credentials of a Secrets Manager secret.

The secret is a JSON object: ``{"username": ..., "password": ...}`` for HTTP Basic, or ``{"token": ...}``
for a bearer token; read once per container, on the first push, so a stack without a PACS never calls
Secrets Manager. Nothing of the request, the answer or the secret is logged.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from medimage.core.dicomweb import HttpAnswer, PacsUnreachable

MAX_ANSWER_BYTES = 1_000_000


def authorization(secret: dict[str, Any]) -> str | None:
    """The Authorization header of a credentials secret; None for an empty one."""
    if secret.get("token"):
        return f"Bearer {secret['token']}"
    if secret.get("username"):
        pair = f"{secret['username']}:{secret.get('password', '')}".encode()
        return "Basic " + base64.b64encode(pair).decode("ascii")
    return None


def secret_reader(secret_id: str) -> Callable[[], dict[str, Any]]:
    """Reads the secret (JSON) with the function's role: GetSecretValue on that one secret."""

    def read() -> dict[str, Any]:
        from medimage.adapters.aws import client

        value = client("secretsmanager").get_secret_value(SecretId=secret_id)["SecretString"]
        parsed = json.loads(value)
        if not isinstance(parsed, dict):
            raise ValueError("the PACS credentials secret must be a JSON object")
        return parsed

    return read


class UrllibDicomWebClient:
    def __init__(self, credentials: Callable[[], dict[str, Any]] | None = None) -> None:
        self._credentials = credentials
        self._authorization: str | None = None
        self._loaded = False

    def _auth(self) -> str | None:
        if not self._loaded and self._credentials is not None:
            self._authorization = authorization(self._credentials())
            self._loaded = True
        return self._authorization

    def post(self, url: str, body: bytes, content_type: str, timeout_s: float) -> HttpAnswer:
        headers = {"Content-Type": content_type, "Accept": "application/dicom+json"}
        auth = self._auth()
        if auth:
            headers["Authorization"] = auth
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                return HttpAnswer(response.status, response.read(MAX_ANSWER_BYTES))
        except urllib.error.HTTPError as exc:
            return HttpAnswer(exc.code, exc.read(MAX_ANSWER_BYTES))
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            reason = getattr(exc, "reason", exc)
            raise PacsUnreachable(type(reason).__name__) from None
