"""The fault injector: seeded AWS failures at the botocore level, for tests and benchmarks.

It registers two handlers on the event emitter of boto3's default session (from which every
``boto3.client(...)`` is made: the project's adapters, ``LocalAws``, the local SageMaker, moto's Step
Functions interpreter), and drops the adapters' cached clients so that they are made again with them:

- ``before-parameter-build.*``: records the call as the caller made it (`RecordedCall`, with the bucket,
  key, table... it names) and raises `SimulatedCrash` when a crash rule says the current invocation dies
  here;
- ``before-send.*``: per attempt, draws a fault from the rules. It stands in for moto's own
  ``before-send`` stub on that emitter (botocore calls every handler of the event, so a fault answer must
  keep moto from also applying the request): without a fault it hands the request to moto (in-process
  mode) or returns nothing (the HTTP request to ``medimage up``'s moto server goes out as usual).

No project code is patched. The random draws come from ``random.Random(seed)`` under one lock, so a
single-threaded run replays exactly; with threads, the same seed gives the same fault rate and mix.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ReadTimeoutError
from botocore.httpsession import URLLib3Session

from harness.faults.plan import (
    SERVER_ERRORS,
    SERVICES,
    THROTTLES,
    CrashRule,
    FaultKind,
    FaultRule,
    RecordedCall,
    RecordedFault,
    is_write,
    service_of,
    summarize,
)
from harness.faults.responses import error_response


class SimulatedCrash(BaseException):
    """The process dies here: a BaseException, so no ``except Exception`` in the code under test stops it."""


class FunctionCrashed(Exception):
    """What the caller of a crashed invocation sees (Lambda reports the runtime's exit as a failure; Step
    Functions names such an unhandled runtime failure ``Lambda.Unknown``)."""

    lambda_error_type = "Lambda.Unknown"


def _moto_stub() -> Any | None:
    try:
        from moto.core.models import botocore_stubber
    except ImportError:
        return None
    return botocore_stubber


class FaultInjector:
    """``with FaultInjector(rules, seed=1) as injector: ...``; then ``injector.calls`` / ``faults``."""

    def __init__(
        self,
        rules: list[FaultRule] | tuple[FaultRule, ...] = (),
        crashes: list[CrashRule] | tuple[CrashRule, ...] = (),
        seed: int = 0,
        services: tuple[str, ...] = SERVICES,
    ) -> None:
        self.rules = tuple(rules)
        self.crashes = list(crashes)
        self.seed = seed
        self.services = services
        self.calls: list[RecordedCall] = []
        self.faults: list[RecordedFault] = []
        self.attempts = 0
        # Attempts (HTTP sends) by the function whose invocation made them (None: outside any).
        self.attempts_by_scope: Counter[str | None] = Counter()
        self._crashed: Counter[int] = Counter()
        self._drawn: Counter[int] = Counter()
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._local = threading.local()
        self._session: Any = None
        self._http = URLLib3Session()

    @classmethod
    def uniform(cls, rate: float, seed: int = 0, crashes: tuple[CrashRule, ...] = ()) -> FaultInjector:
        """Faults at ``rate`` of every attempt of every known service, the three kinds mixed."""
        return cls([FaultRule(rate=rate)], crashes, seed)

    # ------------------------------------------------------------------ figures
    @property
    def retries(self) -> int:
        """Attempts beyond the first of each call: botocore's own retries."""
        return max(0, self.attempts - len(self.calls))

    def faults_by_service(self) -> dict[str, int]:
        return dict(sorted(Counter(f.service for f in self.faults).items()))

    def faults_by_kind(self) -> dict[str, int]:
        return dict(sorted(Counter(f.kind.value for f in self.faults).items()))

    # ------------------------------------------------------------------ activation
    def __enter__(self) -> FaultInjector:
        self.activate()
        return self

    def __exit__(self, *exc: object) -> None:
        self.deactivate()

    def activate(self) -> None:
        from medimage.adapters.aws import reset_clients

        session = boto3._get_default_session()
        events = session.events
        stub = _moto_stub()
        if stub is not None:
            events.unregister("before-send", stub)
        events.register("before-parameter-build", self._before_call, unique_id="medimage-faults-call")
        events.register("before-send", self._before_send, unique_id="medimage-faults-send")
        self._session = session
        reset_clients()

    def deactivate(self) -> None:
        from medimage.adapters.aws import reset_clients

        if self._session is None:
            return
        events = self._session.events
        events.unregister("before-parameter-build", unique_id="medimage-faults-call")
        events.unregister("before-send", unique_id="medimage-faults-send")
        stub = _moto_stub()
        if stub is not None:
            events.register("before-send", stub)
        self._session = None
        reset_clients()

    # ------------------------------------------------------------------ invocations
    @contextmanager
    def invocation(self, function: str) -> Iterator[None]:
        """Calls made in this block (this thread) belong to one invocation of ``function``."""
        previous = getattr(self._local, "scope", None)
        self._local.scope = [function, 0]
        try:
            yield
        finally:
            self._local.scope = previous

    def wrap(self, function: Any) -> Any:
        """A function object (``invoke(event)``, ``logical_id``) whose invocations run in their own scope;
        a crash inside surfaces as `FunctionCrashed`, as Lambda reports a dead runtime."""
        return _CrashableFunction(self, function)

    def wrap_local_aws(self, env: Any) -> None:
        """Wrap every function of a ``LocalAws`` (event sources and Step Functions task states)."""
        for name, fn in list(env.functions.items()):
            env.functions[name] = self.wrap(fn)
        for invoker in getattr(env, "task_invokers", {}).values():
            invoker.function = self.wrap(invoker.function)

    # ------------------------------------------------------------------ handlers
    def _before_call(self, event_name: str, params: Any = None, **_: Any) -> None:
        _, service_id, operation = [*event_name.split("."), "", ""][:3]
        service = service_of(service_id)
        scope = getattr(self._local, "scope", None)
        function = scope[0] if scope else None
        summary = summarize(params) if isinstance(params, dict) else {}
        with self._lock:
            self.calls.append(RecordedCall(service, operation, summary, function))
            crash = self._crash_due(scope, service) if scope else None
        if crash is not None:
            self.faults.append(RecordedFault(service, operation, FaultKind.CRASH, "crash", function))
            raise SimulatedCrash(f"{function} died before {service}:{operation} (after {scope[1] - 1} calls)")

    def _crash_due(self, scope: list[Any], service: str) -> CrashRule | None:
        if service not in self.services:
            return None
        scope[1] += 1
        for index, rule in enumerate(self.crashes):
            due = rule.function in ("*", scope[0]) and scope[1] == rule.after_calls + 1
            if due and self._crashed[index] < rule.times:
                self._crashed[index] += 1
                return rule
        return None

    def _before_send(self, event_name: str, request: Any, **kwargs: Any) -> AWSResponse | None:
        _, service_id, operation = [*event_name.split("."), "", ""][:3]
        service = service_of(service_id)
        scope = getattr(self._local, "scope", None)
        function = scope[0] if scope else None
        kind, rule = self._draw(service, operation, function)
        if kind is FaultKind.TIMEOUT_AFTER_WRITE:
            self._pass_on(event_name, request, **kwargs)  # applied by the service...
            self._record(RecordedFault(service, operation, kind, "ReadTimeout", function))
            raise ReadTimeoutError(endpoint_url=request.url)  # ...but the answer never arrived
        if kind is FaultKind.THROTTLE or kind is FaultKind.ERROR:
            code, status = (THROTTLES if kind is FaultKind.THROTTLE else SERVER_ERRORS)[service]
            self._record(RecordedFault(service, operation, kind, code, function))
            retry_after = rule.retry_after_s if rule is not None and kind is FaultKind.THROTTLE else None
            message = f"injected {kind.value} on {service}:{operation}"
            return error_response(service, request.url, code, status, message, retry_after)
        return self._stub(event_name, request, **kwargs)

    def _draw(
        self, service: str, operation: str, function: str | None
    ) -> tuple[FaultKind | None, FaultRule | None]:
        with self._lock:
            if service not in self.services:
                return None, None
            self.attempts += 1
            self.attempts_by_scope[function] += 1
            for index, rule in enumerate(self.rules):
                if rule.limit is not None and self._drawn[index] >= rule.limit:
                    continue
                if rule.matches(service, operation, function) and self._random.random() < rule.rate:
                    self._drawn[index] += 1
                    kind = self._random.choice(rule.kinds)
                    if kind is FaultKind.TIMEOUT_AFTER_WRITE and not is_write(service, operation):
                        kind = FaultKind.ERROR
                    return kind, rule
        return None, None

    def _record(self, fault: RecordedFault) -> None:
        with self._lock:
            self.faults.append(fault)

    def _stub(self, event_name: str, request: Any, **kwargs: Any) -> AWSResponse | None:
        """What moto's before-send stub would answer (None outside ``mock_aws``: the request goes out)."""
        stub = _moto_stub()
        if stub is None:
            return None
        return stub(event_name=event_name, request=request, **kwargs)

    def _pass_on(self, event_name: str, request: Any, **kwargs: Any) -> None:
        """Apply the request for real: to moto in-process, else over HTTP to the endpoint."""
        if self._stub(event_name, request, **kwargs) is None:
            self._http.send(request)
        if hasattr(request, "reset_stream"):
            request.reset_stream()


class _CrashableFunction:
    def __init__(self, injector: FaultInjector, function: Any) -> None:
        self.injector = injector
        self.function = function
        self.logical_id = getattr(function, "logical_id", "function")

    def invoke(self, event: dict[str, Any]) -> Any:
        with self.injector.invocation(self.logical_id):
            try:
                return self.function.invoke(event)
            except SimulatedCrash as crash:
                reset = getattr(self.function, "reset", None)
                if reset is not None:
                    reset()  # the container died with the runtime: the next invocation starts cold
                raise FunctionCrashed(str(crash)) from None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.function, name)
