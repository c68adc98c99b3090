"""Thread-pool tasks belong to the function that submitted them: ``ThreadPoolExecutor.submit`` is wrapped so
that a task runs with its submitter's function name in a thread-local, which ``submitted_function`` reads
(enforce.py's attribution asks it when no handler file is on the worker thread's stack)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

_SUBMITTED_BY = threading.local()


def submitted_function() -> str | None:
    """The function whose code submitted the thread-pool task this thread runs, if any."""
    return getattr(_SUBMITTED_BY, "function", None)


def attribute_pool_tasks(attribute: Callable[[], str | None]) -> None:
    """From now on each submitted task runs as ``attribute()`` said at submission (when it names one)."""
    original = ThreadPoolExecutor.submit

    def submit(self: Any, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        function = attribute()
        if function is None:
            return original(self, fn, *args, **kwargs)

        def run(*a: Any, **k: Any) -> Any:
            previous = submitted_function()
            _SUBMITTED_BY.function = function
            try:
                return fn(*a, **k)
            finally:
                _SUBMITTED_BY.function = previous

        return original(self, run, *args, **kwargs)

    ThreadPoolExecutor.submit = submit  # type: ignore[method-assign]
