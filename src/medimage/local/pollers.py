"""Lambda's SQS pollers, as threads: each keeps delivering one event source through ``LocalAws.deliver``
(the same call ``LocalAws.pump()`` makes) until it is told to stop."""

from __future__ import annotations

import logging
import threading
from typing import Any, Protocol

from medimage.local.delivery import EventSource, PumpReport

log = logging.getLogger("medimage.local")

# Long poll of each receive: how long a stop request waits at most for an idle poller.
POLL_WAIT_S = 1


class Deliverer(Protocol):
    """What a poller needs of the local AWS (``LocalAws`` is one), so that it does not import it back."""

    def client(self, service: str) -> Any: ...

    def deliver(
        self, source: EventSource, report: PumpReport, window_s: float = 0.0, wait_s: int = 0, sqs: Any = None
    ) -> int: ...


class Poller(threading.Thread):
    """One event source mapping (or EventBridge target): receive, gather the batching window, invoke."""

    def __init__(
        self, env: Deliverer, source: EventSource, stop: threading.Event, report: PumpReport
    ) -> None:
        super().__init__(name=f"poller-{source.function}-{source.trigger}", daemon=True)
        self.env = env
        self.source = source
        self.stop = stop
        self.report = report

    def run(self) -> None:
        sqs = self.env.client("sqs")
        while not self.stop.is_set():
            try:
                self.env.deliver(
                    self.source,
                    self.report,
                    window_s=self.source.batching_window_s,
                    wait_s=POLL_WAIT_S,
                    sqs=sqs,
                )
            except Exception:  # the queue itself failed (the server is stopping): keep polling
                if self.stop.is_set():
                    return
                log.exception("poller %s: receiving from %s failed", self.name, self.source.queue_url)
                self.stop.wait(POLL_WAIT_S)
