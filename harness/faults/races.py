"""Real races for tests and benchmarks: threads that run at once, and concurrent writers of one S3 key held
until all of them have read, then released one after the other in a chosen order."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import boto3


class WriteRendezvous:
    """Makes concurrent writers of one key really race: the first ``PutObject`` of each thread named in
    ``order`` to a key ending in ``suffix`` waits until all of them have read and arrived, then they write
    one after the other in ``order``. Clients made inside the block carry the hooks."""

    def __init__(self, suffix: str, order: list[str], timeout_s: float = 30.0) -> None:
        self.suffix = suffix
        self.order = order
        self.timeout_s = timeout_s
        self.arrived: set[str] = set()
        self.turn = 0
        self.writing: str | None = None
        self._cond = threading.Condition()

    def _ours(self, params: Any) -> str | None:
        name = threading.current_thread().name
        key = params.get("Key", "") if isinstance(params, dict) else ""
        return name if key.endswith(self.suffix) and name in self.order else None

    def before(self, params: Any = None, **_: Any) -> None:
        name = self._ours(params)
        if name is None:
            return
        with self._cond:
            if self.order.index(name) < self.turn:
                return  # this thread already had its turn: its later writes are not held
            self.arrived.add(name)
            self._cond.notify_all()
            released = self._cond.wait_for(
                lambda: self.arrived == set(self.order) and self.order[self.turn] == name, self.timeout_s
            )
            if not released:
                raise TimeoutError(f"{name} waited in vain for {set(self.order) - self.arrived}")
            self.writing = name

    def after(self, **_: Any) -> None:
        with self._cond:
            if self.writing == threading.current_thread().name:
                self.writing = None
                self.turn += 1
                self._cond.notify_all()

    def __enter__(self) -> WriteRendezvous:
        from medimage.adapters.aws import reset_clients

        events = boto3._get_default_session().events
        events.register("before-parameter-build.s3.PutObject", self.before, unique_id="rendezvous-before")
        events.register("after-call.s3.PutObject", self.after, unique_id="rendezvous-after")
        reset_clients()
        return self

    def __exit__(self, *exc: object) -> None:
        from medimage.adapters.aws import reset_clients

        events = boto3._get_default_session().events
        events.unregister("before-parameter-build.s3.PutObject", unique_id="rendezvous-before")
        events.unregister("after-call.s3.PutObject", unique_id="rendezvous-after")
        reset_clients()


def run_threads(targets: dict[str, Callable[[], Any]], timeout_s: float = 120.0) -> dict[str, Any]:
    """Run each target in a thread of that name; {name: its result or the exception it raised}."""
    results: dict[str, Any] = {}

    def body(name: str, target: Callable[[], Any]) -> None:
        try:
            results[name] = target()
        except Exception as exc:
            results[name] = exc

    threads = [threading.Thread(target=body, args=item, name=item[0]) for item in targets.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout_s)
        if thread.is_alive():
            raise TimeoutError(f"{thread.name} did not finish in {timeout_s} s")
    return results
