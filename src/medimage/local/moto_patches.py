"""Every use of a pinned moto internal, in one place: what the project patches in moto 5.2.x so that the
deployed ``statemachine/*.asl.json`` run in moto's own Step Functions interpreter.

Used inside ``mock_aws(config={"stepfunctions": {"execute_state_machine": True}, "lambda":
{"use_docker": False}})``. moto interprets the ASL itself; these patches only fill the gaps that keep the
workflows from running there, each at the narrowest point (one is for test speed):

1. ``route_lambda`` (``moto.awslambda_simple.models.LambdaSimpleBackend.invoke``): Lambda Task states
   (``arn:aws:states:::lambda:invoke``) reach moto's Docker-less Lambda backend, which returns a canned
   payload. An invocation of a routed function name runs the project's real handler in-process and
   answers as Lambda does (the handler's JSON result, or ``X-Amz-Function-Error: Unhandled`` with
   ``{"errorType", "errorMessage"}``, so Retry/Catch match the exception's class name); other names keep
   moto's behaviour.
2. ``emulate_sagemaker_training`` (``state_task_factory.state_task_service_for`` and the interpreter's
   task-state classes): moto's interpreter refuses ``arn:aws:states:::sagemaker:createTrainingJob.sync``
   (SageMaker is an "unsupported" service there, and it has no ``.sync``). The ``sagemaker`` service gets
   ``LocalTrainingJobTask``, backed by ``medimage.local.sagemaker.LocalSageMaker``; a failed job fails the
   task as Step Functions does (``States.TaskFailed``, the description as cause).
3. ``compress_retry_delays`` (``retrier_decl.time``): scales the interpreter's Retry sleeps only (so a
   test of "retried three times" does not wait 14 s); the number of attempts and their order are unchanged.
4. ``send_task_failure_as_aws`` (``StepFunctionResponse.send_task_failure``): moto's request handler
   drops SendTaskFailure's ``cause`` before its interpreter sees it (a Catch then reads ``"Cause": null``),
   and its backend accepts a failure for the task of an execution that already ended. The patch hands the
   cause on and, as for SendTaskSuccess, only a running execution's task takes it (else ``InvalidToken``):
   a rejected sign-off's answer travels there, and a stale one must be refused.

The training definition is never rewritten: the same file, with the template's DefinitionSubstitutions
resolved to local names, is what runs. A Distributed Map (the bulk import's ItemReader and ItemBatcher,
its tolerated failures) has its own patches in ``medimage.local.moto_map``.

``medimage.local.moto_pin.check_moto_version`` refuses a moto these patches were not written for.
"""

from __future__ import annotations

import json
import time
import traceback
import types
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from typing import Any

from medimage.local.moto_map import (
    batch_map_items,
    paginated_item_reader,
    tolerate_map_failures,
    write_failed_results,
)
from medimage.local.moto_pin import check_moto_version
from medimage.local.sagemaker import LocalSageMaker, TrainingJobError
from medimage.local.template import function_name_of


def moto_config() -> dict[str, Any]:
    """The moto settings local mode needs: the real ASL interpreter, no Docker for Lambda."""
    return {"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}


def configure_moto_server(endpoint_url: str) -> None:
    """Apply ``moto_config()`` to a moto server through its config API (``POST /moto-api/config``)."""
    import requests

    response = requests.post(f"{endpoint_url}/moto-api/config", json=moto_config(), timeout=10)
    response.raise_for_status()


# ---------------------------------------------------------------------------------------------- Lambda
Invoker = Callable[[dict[str, Any]], Any]


def _invocation_response(invoker: Invoker, body: Any, response_headers: dict[str, Any]) -> bytes:
    event = json.loads(body) if body else {}
    try:
        result = invoker(event)
    except Exception as exc:  # the Lambda runtime reports any handler exception this way
        response_headers["x-amz-function-error"] = "Unhandled"
        return json.dumps(
            {
                # A runtime that died (not an exception of the handler) names its own error type.
                "errorType": getattr(exc, "lambda_error_type", type(exc).__name__),
                "errorMessage": str(exc),
                "stackTrace": traceback.format_tb(exc.__traceback__),
            }
        ).encode("utf-8")
    return json.dumps(result).encode("utf-8")


@contextmanager
def route_lambda(invokers: Mapping[str, Invoker]) -> Iterator[None]:
    """Invocations of these function names (or ARNs ending in them) run the given invokers in-process."""
    check_moto_version()
    from moto.awslambda_simple.models import LambdaSimpleBackend

    original = LambdaSimpleBackend.invoke

    def invoke(
        self: Any, function_name: str, qualifier: str | None, body: Any, headers: Any, response_headers: Any
    ) -> str | bytes | None:
        invoker = invokers.get(function_name_of(function_name))
        if invoker is None:
            return original(self, function_name, qualifier, body, headers, response_headers)
        payload = _invocation_response(invoker, body, response_headers)
        response_headers["Content-Length"] = str(len(payload))
        return payload

    LambdaSimpleBackend.invoke = invoke  # type: ignore[method-assign]
    try:
        yield
    finally:
        LambdaSimpleBackend.invoke = original  # type: ignore[method-assign]


# -------------------------------------------------------------------------------------------- SageMaker
def _training_task_class(sagemaker: LocalSageMaker) -> type:
    """The interpreter's task state for ``sagemaker:createTrainingJob.sync``, backed by ``sagemaker``."""
    from moto.stepfunctions.parser.api import HistoryEventType, TaskFailedEventDetails
    from moto.stepfunctions.parser.asl.component.common.error_name.custom_error_name import CustomErrorName
    from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
        FailureEvent,
        FailureEventException,
    )
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
        StatesErrorNameType,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.resource import (
        ResourceCondition,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_callback import (  # noqa: E501
        StateTaskServiceCallback,
    )
    from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails
    from moto.stepfunctions.parser.asl.utils.encoding import to_json_str

    class LocalTrainingJobTask(StateTaskServiceCallback):
        """``createTrainingJob`` (request/response and ``.sync``) against the local SageMaker."""

        def __init__(self) -> None:
            # moto's .sync machinery also waits on a task-token endpoint, so both patterns are declared.
            super().__init__(
                supported_integration_patterns={ResourceCondition.Sync, ResourceCondition.WaitForTaskToken}
            )

        def _get_supported_parameters(self) -> set[str] | None:
            if self.resource.api_action.lower() != "createtrainingjob":
                return None
            return {
                "TrainingJobName",
                "RoleArn",
                "AlgorithmSpecification",
                "HyperParameters",
                "InputDataConfig",
                "OutputDataConfig",
                "ResourceConfig",
                "StoppingCondition",
                "Tags",
                "Environment",
                "VpcConfig",
                "EnableManagedSpotTraining",
                "CheckpointConfig",
            }

        def _failure(self, env: Any, error: str, cause: str, typ: Any = None) -> FailureEventException:
            name = StatesErrorName(typ=typ) if typ is not None else CustomErrorName(error)
            return FailureEventException(
                FailureEvent(
                    env=env,
                    error_name=name,
                    event_type=HistoryEventType.TaskFailed,
                    event_details=EventDetails(
                        taskFailedEventDetails=TaskFailedEventDetails(
                            error=error,
                            cause=cause,
                            resource=self._get_sfn_resource(),
                            resourceType=self._get_sfn_resource_type(),
                        )
                    ),
                )
            )

        def _eval_service_task(
            self, env: Any, resource_runtime_part: Any, normalised_parameters: dict, state_credentials: Any
        ) -> None:
            try:
                env.stack.append(sagemaker.create_training_job(normalised_parameters))
            except TrainingJobError as exc:
                error = (
                    "SageMaker.ResourceInUseException"
                    if exc.code == "ResourceInUse"
                    else "SageMaker.AmazonSageMakerException"
                )
                raise self._failure(
                    env, error, f"{exc} (Service: AmazonSageMaker; Error Code: {exc.code})"
                ) from None

        def _build_sync_resolver(
            self, env: Any, resource_runtime_part: Any, normalised_parameters: dict, state_credentials: Any
        ) -> Callable[[], Any]:
            env.stack.pop()  # the CreateTrainingJob response: .sync answers with the description
            name = normalised_parameters["TrainingJobName"]

            def resolve() -> dict[str, Any] | None:
                description = sagemaker.describe_training_job(name)
                status = description["TrainingJobStatus"]
                if status == "Completed":
                    return description
                if status in ("Failed", "Stopped"):
                    raise self._failure(
                        env,
                        StatesErrorNameType.StatesTaskFailed.to_name(),
                        to_json_str(description),
                        StatesErrorNameType.StatesTaskFailed,
                    )
                return None

            return resolve

    return LocalTrainingJobTask


@contextmanager
def emulate_sagemaker_training(sagemaker: LocalSageMaker) -> Iterator[LocalSageMaker]:
    """``sagemaker:*`` task states run against ``sagemaker``; every other service is moto's own."""
    check_moto_version()
    from moto.stepfunctions.parser.asl.component.state.exec.state_task import state_task_factory

    original = state_task_factory.state_task_service_for
    task_class = _training_task_class(sagemaker)

    def state_task_service_for(service_name: str) -> Any:
        return task_class() if service_name == "sagemaker" else original(service_name)

    state_task_factory.state_task_service_for = state_task_service_for
    try:
        yield sagemaker
    finally:
        state_task_factory.state_task_service_for = original


@contextmanager
def compress_retry_delays(scale: float) -> Iterator[None]:
    """Multiply the interpreter's Retry waits by ``scale`` (attempt counts and order are unchanged)."""
    check_moto_version()
    from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl

    original = retrier_decl.time
    retrier_decl.time = types.SimpleNamespace(sleep=lambda seconds: time.sleep(seconds * scale))  # type: ignore[assignment]
    try:
        yield
    finally:
        retrier_decl.time = original  # type: ignore[assignment]


@contextmanager
def send_task_failure_as_aws() -> Iterator[None]:
    """SendTaskFailure reaches a running execution's task with its ``cause``; any other token is refused."""
    check_moto_version()
    from moto.core.responses import EmptyResult
    from moto.stepfunctions.parser.api import ExecutionStatus, InvalidToken, TaskDoesNotExist, TaskTimedOut
    from moto.stepfunctions.parser.asl.eval.callback.callback import (
        CallbackConsumerTimeout,
        CallbackNotifyConsumerError,
        CallbackOutcomeFailure,
    )
    from moto.stepfunctions.responses import StepFunctionResponse

    original = StepFunctionResponse.send_task_failure

    def send_task_failure(self: Any) -> Any:
        token = self._get_param("taskToken")
        outcome = CallbackOutcomeFailure(token, self._get_param("error"), self._get_param("cause"))
        for execution in self.stepfunction_backend._get_executions(ExecutionStatus.RUNNING):
            try:
                if execution.exec_worker.env.callback_pool_manager.notify(callback_id=token, outcome=outcome):
                    return EmptyResult()
            except CallbackNotifyConsumerError as exc:
                raise (
                    TaskTimedOut() if isinstance(exc, CallbackConsumerTimeout) else TaskDoesNotExist()
                ) from None
        raise InvalidToken()

    StepFunctionResponse.send_task_failure = send_task_failure  # type: ignore[method-assign]
    try:
        yield
    finally:
        StepFunctionResponse.send_task_failure = original  # type: ignore[method-assign]


@contextmanager
def local_training_workflow(
    invokers: Mapping[str, Invoker], sagemaker: LocalSageMaker | None = None, retry_delay_scale: float = 1.0
) -> Iterator[LocalSageMaker]:
    """All the patches at once (inside an active ``mock_aws`` with the local-mode config)."""
    sagemaker = sagemaker or LocalSageMaker()
    with ExitStack() as stack:
        stack.enter_context(route_lambda(invokers))
        stack.enter_context(emulate_sagemaker_training(sagemaker))
        stack.enter_context(paginated_item_reader())
        stack.enter_context(batch_map_items())  # before the tolerance, which reads its item counts
        stack.enter_context(write_failed_results())  # after the batching: a failed child's input is its batch
        stack.enter_context(tolerate_map_failures())
        stack.enter_context(send_task_failure_as_aws())
        if retry_delay_scale != 1.0:
            stack.enter_context(compress_retry_delays(retry_delay_scale))
        yield sagemaker
