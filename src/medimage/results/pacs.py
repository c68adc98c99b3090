"""Back to the PACS: an SR sent by STOW-RS, retried a bounded number of times, then reported (no boto3).

Sending never blocks or fails the prediction: drop-to-label calls `PacsPusher.push` after the result is
written, and every failure ends in a failure record (``pacs/failed/<dataset>/<name>.json``, see
docs/CONTRACTS.md) and a log line the ``PacsPushFailed`` metric counts. What is retried:

- no answer (refused connection, timeout, DNS): the PACS may be restarting;
- HTTP 408, 429 and 5xx: the PACS is busy or failing for now.

Any other answer (400, 401, 403, 409...) is final: sending the same bytes again gets the same refusal.
Any other fault of the client (its credentials unreadable) is final too (``pacs_error``).
A 202 is a PACS that stored nothing of a one-instance request it partly refused: also final.

After a push has used up its attempts the pusher stops trying for ``cooldown_s``: the next pushes of the
batch are recorded at once, so an unreachable PACS costs one push's retries per cool-down, not one per
image, and a batch still ends far inside the function's timeout.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from medimage.core.dicomweb import HttpAnswer, PacsUnreachable, multipart_related, stow_url
from medimage.core.layout import pacs_failure_key
from medimage.services.ports import ObjectStore

RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


class DicomWebClient(Protocol):
    """The port of the HTTP call; the adapter adds the credentials."""

    def post(self, url: str, body: bytes, content_type: str, timeout_s: float) -> HttpAnswer:
        """The PACS's answer, or `PacsUnreachable` when there is none."""
        ...


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 3
    first_delay_s: float = 0.5
    factor: float = 2.0
    timeout_s: float = 5.0
    cooldown_s: float = 60.0

    def delays(self) -> list[float]:
        """The waits between attempts: 0.5 s, 1 s... (``attempts - 1`` of them)."""
        return [self.first_delay_s * self.factor**i for i in range(max(self.attempts - 1, 0))]


@dataclass(frozen=True)
class PushOutcome:
    """``pushed`` or the failure's code: ``pacs_refused`` (a final HTTP answer), ``pacs_unavailable``
    (retryable answers or no answer, attempts used up) or ``pacs_paused`` (not tried: cooling down)."""

    pushed: bool
    attempts: int
    code: str | None = None
    status: int | None = None
    message: str | None = None
    failure_key: str | None = None


class PacsPusher:
    def __init__(
        self,
        client: DicomWebClient,
        url: str,
        store: ObjectStore,
        policy: RetryPolicy = RetryPolicy(),
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        clock: Callable[[], str] | None = None,
    ) -> None:
        self.client = client
        self.url = stow_url(url)
        self.store = store
        self.policy = policy
        self.sleep = sleep
        self.monotonic = monotonic
        self.clock = clock or _utcnow
        self._paused_until: float | None = None

    def push(self, sr: bytes, dataset: str, sr_key: str, result_key: str) -> PushOutcome:
        """Send one SR; on failure write its record (the SR stays at ``sr_key``, to be sent again)."""
        if self._paused_until is not None and self.monotonic() < self._paused_until:
            outcome = PushOutcome(False, 0, "pacs_paused", message="an earlier push used up its retries")
            return self._record(outcome, dataset, sr_key, result_key)
        content_type, body = multipart_related([sr])
        delays = self.policy.delays()
        status: int | None = None
        message = ""
        for attempt in range(1, self.policy.attempts + 1):
            try:
                answer = self.client.post(self.url, body, content_type, self.policy.timeout_s)
            except PacsUnreachable as exc:
                status, message = None, f"no answer: {exc}"
            except Exception as exc:  # the adapter's own fault (credentials unreadable...): never retried
                message = f"the push failed: {type(exc).__name__}"
                outcome = PushOutcome(False, attempt, "pacs_error", None, message)
                return self._record(outcome, dataset, sr_key, result_key)
            else:
                status = answer.status
                if status == 200:
                    self._paused_until = None
                    return PushOutcome(True, attempt, status=status)
                message = f"HTTP {status}"
                if status not in RETRYABLE_STATUSES:
                    outcome = PushOutcome(False, attempt, "pacs_refused", status, message)
                    return self._record(outcome, dataset, sr_key, result_key)
            if attempt <= len(delays):
                self.sleep(delays[attempt - 1])
        self._paused_until = self.monotonic() + self.policy.cooldown_s
        outcome = PushOutcome(False, self.policy.attempts, "pacs_unavailable", status, message)
        return self._record(outcome, dataset, sr_key, result_key)

    def _record(self, outcome: PushOutcome, dataset: str, sr_key: str, result_key: str) -> PushOutcome:
        key = pacs_failure_key(dataset, sr_key)
        self.store.put_json(key, failure_record(outcome, dataset, sr_key, result_key, self.clock()))
        return PushOutcome(
            outcome.pushed, outcome.attempts, outcome.code, outcome.status, outcome.message, key
        )


def failure_record(
    outcome: PushOutcome, dataset: str, sr_key: str, result_key: str, failed_at: str
) -> dict[str, Any]:
    """What a failed push leaves (docs/CONTRACTS.md): keys, the code and counts; no header value."""
    return {
        "code": outcome.code,
        "message": outcome.message,
        "http_status": outcome.status,
        "attempts": outcome.attempts,
        "dataset": dataset,
        "sr_key": sr_key,
        "result_key": result_key,
        "failed_at": failed_at,
    }


def _utcnow() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).isoformat(timespec="seconds")
