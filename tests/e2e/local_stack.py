"""`medimage up` as the end-to-end tests run it: free loopback ports, a wait that fails as soon as the
process dies, and a stop by SIGINT (then kill) whatever the test did."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

UP = [sys.executable, "-m", "medimage.cli.main", "up"]
# One thread each: two workers of the suite share two cores.
QUIET_THREADS = {"MEDIMAGE_TF_THREADS": "1", "OMP_NUM_THREADS": "1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(what: str, probe: Callable[[], Any], proc: subprocess.Popen, timeout_s: float = 300) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"medimage up exited ({proc.returncode}) while waiting for {what}"
        value = probe()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def stop(proc: subprocess.Popen) -> None:
    """SIGINT, as a person's Ctrl-C; killed if it has not exited within 30 s."""
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()


@dataclass(frozen=True)
class RunningStack:
    proc: subprocess.Popen
    stack_json: Path
    stack: dict[str, Any]


@contextmanager
def running_up(workdir: Path, log: Path, args: Sequence[str] = ()) -> Iterator[RunningStack]:
    """`medimage up --workdir workdir` on free ports (plus ``args``), output to ``log``, until stack.json
    names its endpoints; stopped on exit."""
    with log.open("w") as out:
        proc = subprocess.Popen(
            [
                *UP,
                "--workdir",
                str(workdir),
                *("--port", str(free_port()), "--api-port", str(free_port())),
                *args,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **QUIET_THREADS},
        )
        try:
            stack_json = workdir / "stack.json"
            wait_for("stack.json", stack_json.exists, proc, timeout_s=120)
            yield RunningStack(proc, stack_json, json.loads(stack_json.read_text()))
        finally:
            stop(proc)
