"""The inference API under load: many concurrent HTTP clients mixing good and bad requests.

Each client is a thread with its own connection per request (as independent callers are), sending
requests drawn in turn from a fixed mix: real images, and the bad inputs the API must refuse with a 4xx
(not an image, empty body, too large, wrong content type, bad JSON, unknown route). The run is bounded by
time or by a request count; every request has a client timeout, so a stuck worker shows as a timeout,
never as a hung benchmark. Used by ``benchmarks/api_load_bench.py`` and ``tests/inference/test_api_load.py``.
"""

from __future__ import annotations

import http.client
import itertools
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from harness.benchmarking.figures import percentile


@dataclass(frozen=True)
class LoadRequest:
    """One kind of request and the statuses a correct API answers it with."""

    kind: str
    method: str
    path: str
    body: bytes
    content_type: str | None
    expected: frozenset[int]


@dataclass
class Outcome:
    kind: str
    status: int | None  # None: no answer (timeout, refused or reset connection)
    latency_s: float
    error: str | None = None
    expected: bool = False


def request_mix(images: Sequence[bytes], too_large_bytes: int = 5_000_000) -> list[LoadRequest]:
    """Good requests (one per image, JPEG/PNG as their bytes say) interleaved with every bad kind."""
    ok = frozenset({200})
    bad = [
        LoadRequest(
            "not_an_image", "POST", "/predict", b"%PDF-1.4 not a picture", "image/jpeg", frozenset({415})
        ),
        LoadRequest("empty", "POST", "/predict", b"", "image/jpeg", frozenset({400})),
        LoadRequest(
            "too_large",
            "POST",
            "/predict",
            b"\xff\xd8\xff" + b"\0" * too_large_bytes,
            "image/jpeg",
            frozenset({413}),
        ),
        LoadRequest(
            "wrong_content_type",
            "POST",
            "/predict",
            b"<xml>hello</xml>",
            "application/xml",
            frozenset({400, 415}),
        ),
        LoadRequest("bad_json", "POST", "/predict", b'{"image": ', "application/json", frozenset({400})),
        LoadRequest("unknown_route", "GET", "/no-such-route", b"", None, frozenset({403, 404})),
    ]
    good = [
        LoadRequest(
            "good", "POST", "/predict", data, "image/png" if data.startswith(b"\x89PNG") else "image/jpeg", ok
        )
        for data in images
    ]
    if not good:
        raise ValueError("the mix needs at least one image")
    mix: list[LoadRequest] = []
    for i, bad_request in enumerate(bad):
        mix.append(good[i % len(good)])
        mix.append(bad_request)
    mix.extend(good[len(bad) :])
    return mix


def send(base_url: str, request: LoadRequest, timeout_s: float) -> Outcome:
    parts = urlsplit(base_url)
    start = time.perf_counter()
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=timeout_s)
    try:
        headers = {"Content-Length": str(len(request.body))}
        if request.content_type:
            headers["Content-Type"] = request.content_type
        conn.request(request.method, request.path, body=request.body or None, headers=headers)
        response = conn.getresponse()
        response.read()
        status = response.status
        return Outcome(request.kind, status, time.perf_counter() - start, expected=status in request.expected)
    except (OSError, http.client.HTTPException) as exc:
        return Outcome(request.kind, None, time.perf_counter() - start, error=type(exc).__name__)
    finally:
        conn.close()


@dataclass
class LoadRun:
    clients: int
    wall_s: float
    outcomes: list[Outcome] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """Counts, status histogram, p50/p95/max latency (all and per kind), and the failures."""
        latencies = [o.latency_s for o in self.outcomes if o.status is not None]
        by_kind: dict[str, list[Outcome]] = {}
        for o in self.outcomes:
            by_kind.setdefault(o.kind, []).append(o)
        statuses: dict[str, int] = {}
        for o in self.outcomes:
            key = str(o.status) if o.status is not None else (o.error or "no_answer")
            statuses[key] = statuses.get(key, 0) + 1
        return {
            "clients": self.clients,
            "requests": len(self.outcomes),
            "wall_s": round(self.wall_s, 2),
            "throughput_rps": round(len(self.outcomes) / self.wall_s, 1) if self.wall_s else 0.0,
            "statuses": dict(sorted(statuses.items())),
            "server_errors_5xx": sum(1 for o in self.outcomes if o.status is not None and o.status >= 500),
            "unanswered": sum(1 for o in self.outcomes if o.status is None),
            "unexpected_status": sum(1 for o in self.outcomes if o.status is not None and not o.expected),
            "latency_ms": _latency_ms(latencies),
            "by_kind": {
                kind: {
                    "requests": len(items),
                    "latency_ms": _latency_ms([o.latency_s for o in items if o.status is not None]),
                }
                for kind, items in sorted(by_kind.items())
            },
        }


def _latency_ms(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    return {
        "p50": round(percentile(values, 0.50) * 1000, 1),
        "p95": round(percentile(values, 0.95) * 1000, 1),
        "max": round(max(values) * 1000, 1),
    }


def run_load(
    base_url: str,
    mix: Sequence[LoadRequest],
    clients: int = 50,
    duration_s: float | None = 20.0,
    max_requests: int | None = None,
    timeout_s: float = 60.0,
) -> LoadRun:
    """``clients`` threads sending ``mix`` in turn (each starting at its own offset) until ``duration_s``
    has passed or ``max_requests`` were sent; a request started before the end is still awaited."""
    if duration_s is None and max_requests is None:
        raise ValueError("bound the run: give duration_s or max_requests")
    counter = itertools.count()
    lock = threading.Lock()
    outcomes: list[Outcome] = []
    start = time.perf_counter()
    deadline = start + duration_s if duration_s is not None else float("inf")
    ready = threading.Barrier(clients)

    def client(offset: int) -> None:
        ready.wait()
        for n in itertools.count(offset):
            with lock:
                index = next(counter)
            if time.perf_counter() >= deadline or (max_requests is not None and index >= max_requests):
                return
            outcome = send(base_url, mix[n % len(mix)], timeout_s)
            with lock:
                outcomes.append(outcome)

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return LoadRun(clients, time.perf_counter() - start, outcomes)


SERVE = [sys.executable, "-m", "medimage.cli.main", "serve"]


@contextmanager
def serving(model: Path, serve: list[str] = SERVE) -> Iterator[str]:
    """`medimage serve --model` on a free loopback port; yields its base URL. Its stdout (the handler's
    log lines) is drained all along: a full pipe would block the server on its next log line."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [*serve, "--model", str(model), "--port", "0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if "http://" not in line:
            raise RuntimeError(f"serve did not start: {line!r}")
        threading.Thread(target=proc.stdout.read, daemon=True).start()
        yield "http://" + line.split("http://", 1)[1].split("/", 1)[0] + "/"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def print_json(doc: dict[str, Any]) -> None:
    print(json.dumps(doc, indent=1, sort_keys=True), flush=True)
