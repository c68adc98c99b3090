"""Run the deployed ``statemachine/training.asl.json`` in moto's own Step Functions interpreter.

Written for and pinned to moto 5.2.x (``mock_aws(config={"stepfunctions": {"execute_state_machine":
True}, "lambda": {"use_docker": False}})``). moto interprets the ASL itself; this adapter only fills the
two gaps that keep the training workflow from running there, each at the narrowest point:

1. Lambda Task states (``arn:aws:states:::lambda:invoke``) reach moto's Docker-less Lambda backend,
   whose ``LambdaSimpleBackend.invoke`` returns a canned payload. ``route_lambda`` replaces that one
   method: an invocation of a routed function name runs the project's real handler in-process and
   answers as Lambda does (the handler's JSON result, or ``X-Amz-Function-Error: Unhandled`` with
   ``{"errorType", "errorMessage"}``, so Retry/Catch match the exception's class name); other names
   keep moto's behaviour.
2. ``arn:aws:states:::sagemaker:createTrainingJob.sync`` is refused by moto's interpreter (SageMaker is
   an "unsupported" service there, and it has no ``.sync``). ``emulate_sagemaker_training`` wraps the
   interpreter's task factory (``state_task_factory.state_task_service_for``) so that the ``sagemaker``
   service gets ``LocalTrainingJobTask``: it validates the CreateTrainingJob request, downloads each
   ManifestFile channel from the emulated S3 to ``<channel dir>/<key>``, runs ``training/train.py``
   under the script-mode contract (``medimage.training.runner``), uploads ``model.tar.gz`` and
   ``output.tar.gz`` to ``<S3OutputPath><job>/output/`` and answers with a DescribeTrainingJob-shaped
   result, or fails the task as Step Functions does (``States.TaskFailed``, the description as cause).

The definition is never rewritten: the same file, with the template's DefinitionSubstitutions resolved
to local names, is what runs. ``compress_retry_delays`` only scales the interpreter's Retry sleeps (so a
test of "retried three times" does not wait 14 s); the number of attempts and their order are unchanged.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import tarfile
import tempfile
import threading
import time
import traceback
import types
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

import boto3
import moto
from botocore.exceptions import ClientError

from medimage.local.template import Resolver

SUPPORTED_MOTO = "5.2."
STATE_MACHINE_LOGICAL_ID = "TrainingStateMachine"
_JOB_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
_TERMINAL = {"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"}


def check_moto_version() -> None:
    """The patched names are moto internals: refuse to run against a moto this was not written for."""
    if not moto.__version__.startswith(SUPPORTED_MOTO):
        raise RuntimeError(
            f"medimage.local.stepfunctions was written for moto {SUPPORTED_MOTO}x, "
            f"found {moto.__version__}; re-check the patched internals before moving the pin"
        )


# ---------------------------------------------------------------------------------------------- Lambda
Invoker = Callable[[dict[str, Any]], Any]


def function_name_of(name_or_arn: str) -> str:
    """``arn:aws:lambda:r:a:function:NAME[:qualifier]`` or ``NAME`` -> ``NAME``."""
    if ":function:" in name_or_arn:
        return name_or_arn.split(":function:", 1)[1].split(":", 1)[0]
    return name_or_arn


def _invocation_response(invoker: Invoker, body: Any, response_headers: dict[str, Any]) -> bytes:
    event = json.loads(body) if body else {}
    try:
        result = invoker(event)
    except Exception as exc:  # the Lambda runtime reports any handler exception this way
        response_headers["x-amz-function-error"] = "Unhandled"
        return json.dumps(
            {
                "errorType": type(exc).__name__,
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
class TrainingOutcome(Protocol):
    """What ``medimage.training.runner.run_train_script`` returns (``TrainingRun``)."""

    @property
    def ok(self) -> bool: ...

    seconds: float
    metrics: dict[str, float]
    failure_reason: str | None


Trainer = Callable[[dict[str, Path], dict[str, str], Path, Path], TrainingOutcome]


def run_train_py(
    channels: dict[str, Path], hyperparameters: dict[str, str], model_dir: Path, output_data_dir: Path
) -> TrainingOutcome:
    """The default trainer: the real training/train.py in a subprocess, as the container runs it."""
    from medimage.training.runner import run_train_script

    return run_train_script(channels, hyperparameters, model_dir, output_data_dir)


class TrainingJobError(Exception):
    """A CreateTrainingJob request SageMaker itself would refuse (surfaces as a SageMaker.* error)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


@dataclass
class LocalSageMaker:
    """The training jobs of one local session: runs them and keeps their descriptions."""

    trainer: Trainer = run_train_py
    region: str = "us-east-1"
    account: str = "123456789012"
    work_dir: Path | None = None
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def create_training_job(self, request: dict[str, Any]) -> dict[str, Any]:
        name = str(request.get("TrainingJobName", ""))
        if not _JOB_NAME.match(name):
            raise TrainingJobError(
                "ValidationException",
                f"training job name '{name}' must match {_JOB_NAME.pattern} (at most 63 characters)",
            )
        hyperparameters = request.get("HyperParameters") or {}
        bad = sorted(k for k, v in hyperparameters.items() if not isinstance(v, str))
        if bad:
            raise TrainingJobError("ValidationException", f"hyperparameter values must be strings: {bad}")
        for required in (
            "RoleArn",
            "AlgorithmSpecification",
            "OutputDataConfig",
            "ResourceConfig",
            "StoppingCondition",
        ):
            if required not in request:
                raise TrainingJobError("ValidationException", f"CreateTrainingJob needs {required}")
        with self._lock:
            if name in self.jobs:
                raise TrainingJobError("ResourceInUse", f"training job {name} already exists")
            self.jobs[name] = {"TrainingJobName": name, "TrainingJobStatus": "InProgress"}
        self.jobs[name] = self._run(name, request, hyperparameters)
        return {"TrainingJobArn": self.jobs[name]["TrainingJobArn"]}

    def describe_training_job(self, name: str) -> dict[str, Any]:
        return self.jobs[name]

    def _run(self, name: str, request: dict[str, Any], hyperparameters: dict[str, str]) -> dict[str, Any]:
        s3 = boto3.client("s3", region_name=self.region)
        created = datetime.now(UTC)
        output_path = str(request["OutputDataConfig"]["S3OutputPath"]).rstrip("/")
        description: dict[str, Any] = {
            "TrainingJobName": name,
            "TrainingJobArn": f"arn:aws:sagemaker:{self.region}:{self.account}:training-job/{name.lower()}",
            "HyperParameters": hyperparameters,
            "AlgorithmSpecification": request["AlgorithmSpecification"],
            "RoleArn": request["RoleArn"],
            "InputDataConfig": request.get("InputDataConfig", []),
            "OutputDataConfig": request["OutputDataConfig"],
            "ResourceConfig": request["ResourceConfig"],
            "StoppingCondition": request["StoppingCondition"],
            "CreationTime": _epoch_ms(created),
            "TrainingStartTime": _epoch_ms(created),
        }
        work = Path(tempfile.mkdtemp(prefix=f"sm-{name}-", dir=self.work_dir))
        try:
            try:
                channels = {
                    c["ChannelName"]: self._download_channel(s3, c, work / "input" / c["ChannelName"])
                    for c in request.get("InputDataConfig", [])
                }
            except ClientError as exc:
                return self._finish(description, "Failed", f"ClientError: cannot download a channel: {exc}")
            model_dir, output_dir = work / "model", work / "output" / "data"
            script_args = {k: v for k, v in hyperparameters.items() if not k.startswith("sagemaker_")}
            outcome = self.trainer(channels, script_args, model_dir, output_dir)
            description["TrainingTimeInSeconds"] = description["BillableTimeInSeconds"] = int(outcome.seconds)
            now = _epoch_ms(datetime.now(UTC))
            description["FinalMetricDataList"] = [
                {"MetricName": k, "Value": v, "Timestamp": now} for k, v in sorted(outcome.metrics.items())
            ]
            if not outcome.ok:
                return self._finish(description, "Failed", f"AlgorithmError: {outcome.failure_reason}")
            bucket, prefix = _split_s3(f"{output_path}/{name}/output/")
            for archive, folder in (("model.tar.gz", model_dir), ("output.tar.gz", output_dir)):
                s3.put_object(Bucket=bucket, Key=prefix + archive, Body=_tar_gz(folder))
            description["ModelArtifacts"] = {"S3ModelArtifacts": f"s3://{bucket}/{prefix}model.tar.gz"}
            return self._finish(description, "Completed", None)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    @staticmethod
    def _download_channel(s3: Any, channel: dict[str, Any], target: Path) -> Path:
        """A ManifestFile channel as SageMaker delivers it: each listed key at ``<channel dir>/<key>``."""
        source = channel["DataSource"]["S3DataSource"]
        if source.get("S3DataType") != "ManifestFile":
            raise TrainingJobError("ValidationException", "local training takes ManifestFile channels only")
        bucket, key = _split_s3(source["S3Uri"])
        entries = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        prefix_bucket, prefix = _split_s3(entries[0]["prefix"])
        target.mkdir(parents=True, exist_ok=True)
        for relative in entries[1:]:
            path = target / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(s3.get_object(Bucket=prefix_bucket, Key=prefix + relative)["Body"].read())
        return target

    @staticmethod
    def _finish(description: dict[str, Any], status: str, reason: str | None) -> dict[str, Any]:
        end = _epoch_ms(datetime.now(UTC))
        description.update(
            {
                "TrainingJobStatus": status,
                "SecondaryStatus": status,
                "TrainingEndTime": end,
                "LastModifiedTime": end,
            }
        )
        if reason:
            description["FailureReason"] = reason[:1024]
        return description


def _split_s3(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise TrainingJobError("ValidationException", f"'{uri}' is not an s3:// URI")
    return parsed.netloc, parsed.path.lstrip("/")


def _tar_gz(folder: Path) -> bytes:
    """Pack a folder's content at the archive root, as SageMaker packs SM_MODEL_DIR."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        if folder.exists():
            for path in sorted(folder.rglob("*")):
                tar.add(path, arcname=path.relative_to(folder).as_posix(), recursive=False)
    return buffer.getvalue()


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
def local_training_workflow(
    invokers: Mapping[str, Invoker], sagemaker: LocalSageMaker | None = None, retry_delay_scale: float = 1.0
) -> Iterator[LocalSageMaker]:
    """All three patches at once (inside an active ``mock_aws`` with the local-mode config)."""
    sagemaker = sagemaker or LocalSageMaker()
    with ExitStack() as stack:
        stack.enter_context(route_lambda(invokers))
        stack.enter_context(emulate_sagemaker_training(sagemaker))
        if retry_delay_scale != 1.0:
            stack.enter_context(compress_retry_delays(retry_delay_scale))
        yield sagemaker


# ------------------------------------------------------------------------------------ state machines
def definition_from_template(
    root: Path, template: dict[str, Any], resolver: Resolver, logical_id: str = STATE_MACHINE_LOGICAL_ID
) -> str:
    """The state machine's ASL file with its DefinitionSubstitutions resolved by ``resolver``."""
    props = template["Resources"][logical_id]["Properties"]
    definition = (root / props["DefinitionUri"]).read_text(encoding="utf-8")
    for name, value in resolver.resolve(props.get("DefinitionSubstitutions", {})).items():
        definition = definition.replace("${" + name + "}", str(value))
    leftover = sorted(set(re.findall(r"\$\{([A-Za-z0-9]+)\}", definition)))
    if leftover:
        raise ValueError(f"{props['DefinitionUri']} uses substitutions the template lacks: {leftover}")
    json.loads(definition)
    return definition


def create_state_machine(
    sfn: Any,
    definition: str,
    name: str,
    role_arn: str = "arn:aws:iam::123456789012:role/medimage-local-states",
) -> str:
    return sfn.create_state_machine(name=name, definition=definition, roleArn=role_arn)["stateMachineArn"]


@dataclass(frozen=True)
class ExecutionResult:
    arn: str
    status: str
    output: dict[str, Any] | None
    error: str | None
    cause: str | None
    history: list[dict[str, Any]]

    def states_entered(self) -> list[str]:
        return [
            e["stateEnteredEventDetails"]["name"] for e in self.history if "stateEnteredEventDetails" in e
        ]

    def events(self, event_type: str) -> list[dict[str, Any]]:
        return [e for e in self.history if e["type"] == event_type]


def run_execution(
    sfn: Any,
    state_machine_arn: str,
    payload: dict[str, Any],
    name: str | None = None,
    timeout_s: float = 600.0,
    poll_s: float = 0.2,
) -> ExecutionResult:
    """Start an execution and wait until it ends; its status, output and full history."""
    name = name or f"local-{uuid.uuid4().hex[:12]}"
    arn = sfn.start_execution(stateMachineArn=state_machine_arn, name=name, input=json.dumps(payload))[
        "executionArn"
    ]
    deadline = time.monotonic() + timeout_s
    while True:
        described = sfn.describe_execution(executionArn=arn)
        if described["status"] in _TERMINAL:
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"execution {arn} still {described['status']} after {timeout_s} s")
        time.sleep(poll_s)
    history: list[dict[str, Any]] = []
    for page in sfn.get_paginator("get_execution_history").paginate(executionArn=arn):
        history.extend(page["events"])
    output = described.get("output")
    return ExecutionResult(
        arn,
        described["status"],
        json.loads(output) if output else None,
        described.get("error"),
        described.get("cause"),
        history,
    )
