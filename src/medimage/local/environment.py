"""The local AWS: moto resources created from ``template.yaml``, and the delivery of S3 notifications,
SQS messages and EventBridge rules to the real handlers. What the template's wiring becomes (event
source mappings, notifications, queue attributes) is computed in ``medimage.local.wiring``.

In-process (the demo, the tests) inside ``mock_aws``, ``pump()`` delivers until every queue is empty; as a
service (``medimage up``) against the moto server at ``endpoint_url``, ``start_pollers()`` keeps
delivering from one thread per event source. Both go through ``deliver()`` (``medimage.local.delivery``).
EventBridge rules whose target is a function get a local SQS queue as their target, so moto's own
pattern matching decides which S3 events reach them; the template's alarms are created too, and their
state changes become events (``medimage.local.alarm_events``).

The training jobs' ``pretrained`` channel reads ``pretrained/mobilenet_v2/``; ``running()`` fills it as
``medimage deploy`` does (``upload_pretrained``, checked against SHA256SUMS) from
``$MEDIMAGE_PRETRAINED_DIR``, else ``../shared/data/pretrained``. Where neither holds the weights the
channel is optional for the local SageMaker: jobs get no ``SM_CHANNEL_PRETRAINED`` and the trainer tries
its other sources, failing with a clear reason only for a preset that needs ImageNet weights.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

import boto3

from medimage.checkout import default_template
from medimage.core.training_job import PRETRAINED_CHANNEL
from medimage.local.account import ACCOUNT, LOCAL_ENV, REGION
from medimage.local.alarm_events import AlarmEvents, AlarmWatcher, create_alarms
from medimage.local.delivery import (
    ASYNC_ATTEMPTS,
    LAMBDA_ASYNC_RETRY_DELAYS_S,
    EventSource,
    PumpReport,
    TaskInvoker,
    deliver,
    sqs_record,
)
from medimage.local.functions import LocalFunction, share_environment, template_functions
from medimage.local.moto_map import local_definition
from medimage.local.moto_patches import configure_moto_server, moto_config
from medimage.local.template import Resolver, definition_from_template
from medimage.local.wiring import (
    bucket_notification,
    dead_letter_url,
    queue_attributes,
    sqs_event_source,
    sqs_mappings,
)
from medimage.template_file import load_template, resources_of_type
from medimage.training.pretrained import MOBILENET_V2_FILE, PRETRAINED_DIR_ENV

log = logging.getLogger("medimage.local")


def local_pretrained_dir(root: Path, env: Mapping[str, str] = os.environ) -> Path:
    """``$MEDIMAGE_PRETRAINED_DIR``, else the shared data beside the checkout at ``root``."""
    given = env.get(PRETRAINED_DIR_ENV)
    return Path(given) if given else root.parent / "shared" / "data" / "pretrained"


__all__ = ["ASYNC_ATTEMPTS", "EventSource", "LocalAws", "PumpReport", "moto_config", "sqs_record"]


class LocalAws:
    """Creates the template's bucket, queues, table, rules and state machine in the active moto mock, or
    in the moto server at ``endpoint_url``.

    ``visibility_timeout_s``: 0 (the default, for ``pump()``) makes a failed message visible again at
    once and retries a failed asynchronous invocation at once; None keeps each queue's VisibilityTimeout
    from the template and Lambda's asynchronous retry delays, as the deployed stack has them.
    ``concurrent`` (default: with an endpoint) lets different functions run at the same time: they then
    share one process environment, the union of theirs, applied once."""

    def __init__(
        self,
        template_path: Path | None = None,
        parameters: dict[str, str] | None = None,
        env_overrides: dict[str, str] | None = None,
        stack_name: str = "medimage-local",
        endpoint_url: str | None = None,
        visibility_timeout_s: int | None = 0,
        concurrent: bool | None = None,
    ) -> None:
        template_path = template_path or default_template()
        self.root = template_path.resolve().parent
        self.template = load_template(template_path)
        self.stack_name = stack_name
        self.parameters = parameters or {}
        self.env_overrides = env_overrides or {}
        self.refs: dict[str, str] = {}
        self.attrs: dict[tuple[str, str], str] = {}
        self.functions: dict[str, LocalFunction] = {}
        self.sources: list[EventSource] = []
        self.state_machine_arn: str | None = None
        # The folder the bucket's pretrained/mobilenet_v2/ came from; None: not staged (module docstring).
        self.pretrained_from: Path | None = None
        self.resolver: Resolver | None = None
        self.sagemaker: Any = None
        # What the Step Functions Task states invoke, by function (filled by ``running()``).
        self.task_invokers: dict[str, TaskInvoker] = {}
        # Puts the events of the alarms' state changes, which moto does not (filled by ``create()``).
        self.alarm_events: AlarmEvents | None = None
        self.endpoint_url = endpoint_url
        self.visibility_timeout_s = visibility_timeout_s
        self.concurrent = endpoint_url is not None if concurrent is None else concurrent

    # ------------------------------------------------------------------ clients
    def client(self, service: str) -> Any:
        return boto3.client(service, region_name=REGION, endpoint_url=self.endpoint_url)

    def local_env(self) -> dict[str, str]:
        """What local mode adds to every function's environment (and this process's)."""
        env = dict(LOCAL_ENV)
        if self.endpoint_url:
            env["AWS_ENDPOINT_URL"] = self.endpoint_url
        if self.concurrent:
            env.pop("ANNOTATION_WAIT_S")  # the pollers run side by side: a commit may wait, as deployed
        return env

    @property
    def async_retry_delays_s(self) -> tuple[float, ...]:
        if self.visibility_timeout_s is None:
            return LAMBDA_ASYNC_RETRY_DELAYS_S
        return (float(self.visibility_timeout_s),) * (ASYNC_ATTEMPTS - 1)

    def queue_urls(self) -> dict[str, str]:
        """Every queue by logical id (the template's, and the local targets of EventBridge rules)."""
        return {logical: self.refs[logical] for (logical, attr) in self.attrs if attr == "QueueName"}

    @property
    def bucket(self) -> str:
        return self.refs["DataBucket"]

    @property
    def table(self) -> str:
        return self.refs["CatalogTable"]

    # ------------------------------------------------------------------ creation
    def create(self) -> LocalAws:
        os.environ.update(self.local_env())
        suffix = hashlib.sha256(self.stack_name.encode()).hexdigest()[:8]
        resources = self.template["Resources"]
        for logical, res in resources.items():
            self._name_uncreated(logical, res["Type"])
        for logical in resources_of_type(self.template, "AWS::SQS::Queue"):
            self._create_queue(logical)
        for logical, res in resources_of_type(self.template, "AWS::SQS::Queue").items():
            self._apply_queue_properties(logical, res)
        for logical, res in resources_of_type(self.template, "AWS::DynamoDB::Table").items():
            self._create_table(logical, res, suffix)
        for logical in resources_of_type(self.template, "AWS::SNS::Topic"):
            arn = self.client("sns").create_topic(Name=f"{self.stack_name}-{logical}")["TopicArn"]
            self.refs[logical] = arn
            self.attrs[(logical, "TopicArn")] = arn
        for logical in resources_of_type(self.template, "AWS::S3::Bucket"):
            name = f"{self.stack_name}-{logical.lower()}-{suffix}"
            self.client("s3").create_bucket(Bucket=name)
            self.refs[logical] = name
            self.attrs[(logical, "Arn")] = f"arn:aws:s3:::{name}"
        early = Resolver(self.template, self.refs, self.attrs, self.parameters, REGION, ACCOUNT)
        for logical, (name, arn) in create_alarms(
            self.template, early, self.client("cloudwatch"), self.stack_name
        ).items():
            self.refs[logical], self.attrs[(logical, "Arn")] = name, arn
        self.resolver = Resolver(self.template, self.refs, self.attrs, self.parameters, REGION, ACCOUNT)
        self._create_functions()
        self._create_state_machines()
        for logical, res in resources_of_type(self.template, "AWS::S3::Bucket").items():
            self._configure_notifications(logical, res)
        self._create_rules()
        self.alarm_events = AlarmEvents(self.client("cloudwatch"), self.client("events"))
        self.alarm_events.prime()
        return self

    def stage_pretrained(self, folder: Path | None = None) -> bool:
        """``medimage deploy``'s upload of the ImageNet weights, into the local bucket; False (and nothing
        uploaded) when ``folder`` (default ``local_pretrained_dir``) does not hold the weights."""
        from medimage.ops.deploy import upload_pretrained

        folder = folder or local_pretrained_dir(self.root)
        if not (folder / MOBILENET_V2_FILE).is_file():
            log.info("no %s in %s: training jobs get no pretrained channel", MOBILENET_V2_FILE, folder)
            return False
        upload_pretrained(self.client("s3"), self.bucket, folder)
        self.pretrained_from = folder
        return True

    def _name_uncreated(self, logical: str, kind: str) -> None:
        """Names and ARNs for what local mode references but does not emulate (functions run in-process;
        roles, keys, alarms, log groups and the API exist only in the deployed stack)."""
        if kind == "AWS::Serverless::StateMachine":
            arn = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{self.stack_name}-{logical}"
            self.refs[logical] = arn
        elif kind == "AWS::Serverless::Function":
            arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{logical}"
            self.refs[logical] = logical
        else:
            service = kind.split("::")[1].lower()
            arn = f"arn:aws:{service}:{REGION}:{ACCOUNT}:{self.stack_name}-{logical}"
            self.refs[logical] = f"{self.stack_name}-{logical}"
        self.attrs[(logical, "Arn")] = arn

    def _create_queue(self, logical: str) -> None:
        sqs = self.client("sqs")
        url = sqs.create_queue(QueueName=f"{self.stack_name}-{logical}")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        self.refs[logical] = url
        self.attrs[(logical, "Arn")] = arn
        self.attrs[(logical, "QueueName")] = f"{self.stack_name}-{logical}"

    def _apply_queue_properties(self, logical: str, res: dict[str, Any]) -> None:
        props = Resolver(self.template, self.refs, self.attrs).resolve(res.get("Properties", {}))
        attributes = queue_attributes(props, self.visibility_timeout_s)
        if attributes:
            self.client("sqs").set_queue_attributes(QueueUrl=self.refs[logical], Attributes=attributes)

    def _create_table(self, logical: str, res: dict[str, Any], suffix: str) -> None:
        props = res["Properties"]
        name = f"{self.stack_name}-{logical}-{suffix}"
        self.client("dynamodb").create_table(
            TableName=name,
            AttributeDefinitions=props["AttributeDefinitions"],
            KeySchema=props["KeySchema"],
            BillingMode=props.get("BillingMode", "PAY_PER_REQUEST"),
        )
        self.refs[logical] = name
        self.attrs[(logical, "Arn")] = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{name}"

    def _create_functions(self) -> None:
        assert self.resolver is not None
        names = list(resources_of_type(self.template, "AWS::Serverless::Function"))
        self.functions = template_functions(
            self.root, self.template, self.resolver, names, {**self.local_env(), **self.env_overrides}
        )
        for function in self.functions.values():
            function.reset()  # a new stack starts cold: no handler module state (clients, caches) of another
        if self.concurrent:
            self.functions = share_environment(self.functions)
        for function, queue, props in sqs_mappings(self.template, self.resolver):
            queue_arn = self.resolver.resolve(queue)
            if function not in self.functions or not queue_arn.startswith("arn:aws:sqs:"):
                continue
            logical_queue = next(k for (k, a), v in self.attrs.items() if a == "Arn" and v == queue_arn)
            self.sources.append(sqs_event_source(function, self.refs[logical_queue], queue_arn, props))

    def _create_state_machines(self) -> None:
        """Each state machine from its ASL file with the template's substitutions resolved. Call inside
        ``running()`` when executions must run: moto builds the task states at creation time."""
        assert self.resolver is not None
        sfn = self.client("stepfunctions")
        for logical in resources_of_type(self.template, "AWS::Serverless::StateMachine"):
            name = f"{self.stack_name}-{logical}"
            definition = local_definition(
                definition_from_template(self.root, self.template, self.resolver, logical), name
            )
            arn = sfn.create_state_machine(
                name=name,
                definition=definition,
                roleArn=f"arn:aws:iam::{ACCOUNT}:role/{self.stack_name}-{logical}-role",
            )["stateMachineArn"]
            self.refs[logical] = arn
            self.attrs[(logical, "Arn")] = arn
            self.state_machine_arn = self.state_machine_arn or arn

    def _configure_notifications(self, logical: str, res: dict[str, Any]) -> None:
        assert self.resolver is not None
        config = self.resolver.resolve(res.get("Properties", {}).get("NotificationConfiguration", {}))
        if not config:
            return
        self.client("s3").put_bucket_notification_configuration(
            Bucket=self.refs[logical], NotificationConfiguration=bucket_notification(config)
        )

    def _create_rules(self) -> None:
        """Each EventBridgeRule event of a function becomes a rule whose target is a local queue."""
        assert self.resolver is not None
        events = self.client("events")
        for logical, res in resources_of_type(self.template, "AWS::Serverless::Function").items():
            for name, event in res.get("Properties", {}).get("Events", {}).items():
                if event.get("Type") != "EventBridgeRule":
                    continue
                pattern = self.resolver.resolve(event["Properties"]["Pattern"])
                queue = f"{logical}-{name}"
                self._create_queue(queue)
                # Lambda's event queue: an event is not handed out again while the function runs.
                timeout = self.visibility_timeout_s
                hidden = self.functions[logical].timeout_s if timeout is None else timeout
                self.client("sqs").set_queue_attributes(
                    QueueUrl=self.refs[queue], Attributes={"VisibilityTimeout": str(hidden)}
                )
                rule = f"{self.stack_name}-{logical}-{name}"
                state = self.resolver.resolve(event["Properties"].get("State", "ENABLED"))
                events.put_rule(Name=rule, EventPattern=json.dumps(pattern), State=state)
                events.put_targets(Rule=rule, Targets=[{"Id": "local", "Arn": self.attrs[(queue, "Arn")]}])
                self.sources.append(
                    EventSource(
                        logical,
                        self.refs[queue],
                        self.attrs[(queue, "Arn")],
                        1,
                        eventbridge=True,
                        retry_delays_s=self.async_retry_delays_s,
                        dead_letter_url=dead_letter_url(res, self.resolver, self.attrs, self.refs),
                    )
                )

    @contextmanager
    def running(
        self, trainer: Any = None, work_dir: Path | None = None, retry_delay_scale: float = 1.0
    ) -> Iterator[LocalAws]:
        """The whole local pipeline: moto with the real ASL interpreter (``mock_aws``, or the moto server
        at ``endpoint_url`` configured through its config API), Lambda Task states routed to the real
        handlers, SageMaker training run by ``trainer`` (default: the real train.py), the ImageNet weights
        staged in the bucket where they are available (module docstring)."""
        from moto import mock_aws

        from medimage.adapters.aws import reset_clients
        from medimage.local.moto_patches import local_training_workflow
        from medimage.local.sagemaker import LocalSageMaker, run_train_py

        invokers: dict[str, Any] = {}
        sagemaker = LocalSageMaker(trainer=trainer or run_train_py, work_dir=work_dir)
        mocked: AbstractContextManager[Any] = nullcontext()
        if self.endpoint_url:
            configure_moto_server(self.endpoint_url)
            # moto's Step Functions interpreter calls the services on this port in server mode.
            os.environ["MOTO_PORT"] = self.endpoint_url.rsplit(":", 1)[1].split("/", 1)[0]
        else:
            mocked = mock_aws(config=moto_config())
        with mocked:
            reset_clients()
            with local_training_workflow(invokers, sagemaker, retry_delay_scale):
                self.create()
                if not self.stage_pretrained():
                    sagemaker.optional_channels = frozenset({PRETRAINED_CHANNEL})
                invokers.update({name: TaskInvoker(fn) for name, fn in self.functions.items()})
                self.task_invokers = invokers
                self.sagemaker = sagemaker
                try:
                    yield self
                finally:
                    reset_clients()

    # ------------------------------------------------------------------ delivery
    def pump(self, max_rounds: int = 1000) -> PumpReport:
        """Deliver queued events to their functions until every queue is empty (or ``max_rounds``).

        Each round drains the SQS event sources first, then delivers the EventBridge targets: queue
        consumers work in seconds, while an asynchronous retry comes minutes later, so a retried event
        finds the queues as they will be by then."""
        report = PumpReport()
        if self.alarm_events is not None:
            self.alarm_events.check()  # alarm state changes since the last look become events
        sqs = self.client("sqs")
        polled = [s for s in self.sources if not s.eventbridge]
        for _ in range(max_rounds):
            delivered = 0
            for _ in range(max_rounds):
                drained = sum(self.deliver(source, report, sqs=sqs) for source in polled)
                delivered += drained
                if not drained:
                    break
            delivered += sum(
                self.deliver(source, report, sqs=sqs) for source in self.sources if source.eventbridge
            )
            if not delivered:
                break
        return report

    def deliver(
        self, source: EventSource, report: PumpReport, window_s: float = 0.0, wait_s: int = 0, sqs: Any = None
    ) -> int:
        """One batch from ``source`` to its function (the body of ``pump()`` and of every poller)."""
        return deliver(
            sqs or self.client("sqs"), self.functions[source.function], source, report, window_s, wait_s
        )

    def start_pollers(
        self, stop: threading.Event, report: PumpReport | None = None
    ) -> list[threading.Thread]:
        """One thread per event source delivering until ``stop`` is set, as Lambda's pollers do: each
        gathers a batch for the mapping's MaximumBatchingWindowInSeconds."""
        from medimage.local.pollers import Poller

        report = report or PumpReport()
        pollers: list[threading.Thread] = [Poller(self, source, stop, report) for source in self.sources]
        if self.alarm_events is not None:
            pollers.append(AlarmWatcher(self.alarm_events, stop))
        for poller in pollers:
            poller.start()
        return pollers
