"""Function wrappers that stage the fault run's races at the Lambda boundary: invocations held until they
can run at once (`Gathered`), a promotion that runs beside a rollback of production (`RollbackDuring`)."""

from __future__ import annotations

import threading
from typing import Any

from harness.benchmarking.fault_uploads import DATASET


class Gathered:
    """A function whose first ``n`` invocations wait until ``n`` have arrived (at most ``timeout_s``),
    so that they run at once; later ones run straight away."""

    def __init__(self, function: Any, n: int, timeout_s: float = 120.0) -> None:
        self.function, self.n, self.timeout_s = function, n, timeout_s
        self.logical_id = function.logical_id
        self.arrived = 0
        self._cond = threading.Condition()

    def invoke(self, event: dict[str, Any]) -> Any:
        with self._cond:
            self.arrived += 1
            if self.arrived <= self.n:
                self._cond.notify_all()
                self._cond.wait_for(lambda: self.arrived >= self.n, self.timeout_s)
        return self.function.invoke(event)


class RollbackDuring:
    """A promote function whose first invocation runs beside a rollback of production: its thread is
    named ``promotion``, the rollback's ``rollback`` (the names a `WriteRendezvous` orders)."""

    def __init__(self, function: Any, bucket: str, injector: Any) -> None:
        self.function, self.bucket, self.injector = function, bucket, injector
        self.logical_id = function.logical_id
        self.outcome: dict[str, Any] = {}
        self._fired = False

    def rollback(self) -> None:
        from medimage.adapters.registry_store import S3RegistryStore
        from medimage.adapters.s3 import S3ObjectStore
        from medimage.services.promote import rollback_production

        try:
            with self.injector.invocation("Rollback"):  # the operator's call faces the faults too
                pointer = rollback_production(
                    S3ObjectStore(self.bucket), S3RegistryStore(self.bucket), DATASET, None
                )
            self.outcome["rollback"] = f"to {pointer.version}"
        except Exception as exc:
            self.outcome["rollback"] = f"{type(exc).__name__}: {exc}"

    def invoke(self, event: dict[str, Any]) -> Any:
        if self._fired:
            return self.function.invoke(event)
        self._fired = True
        thread = threading.current_thread()
        name, thread.name = thread.name, "promotion"
        rollback = threading.Thread(target=self.rollback, name="rollback", daemon=True)
        rollback.start()
        try:
            result = self.function.invoke(event)
            self.outcome["promotion"] = f"promoted {result.get('version')}"
            return result
        except Exception as exc:
            self.outcome["promotion"] = type(exc).__name__
            raise
        finally:
            thread.name = name
            rollback.join(60)
