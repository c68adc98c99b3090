"""The local, in-process AWS: moto resources created from ``template.yaml``, and an event pump that
delivers S3 notifications, SQS messages and EventBridge rules to the real handlers.

What the deployed stack does with event source mappings and rules, ``LocalAws.pump()`` does here:
receive from each queue that a function consumes, call the handler with a real SQS event, delete what
succeeded, and leave failed messages for redelivery (moto applies the queue's redrive policy).
EventBridge rules whose target is a function get a local SQS queue as their target, so moto's own
pattern matching decides which S3 events reach them.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3

from medimage.checkout import project_file
from medimage.local.account import ACCOUNT, CREDENTIALS, REGION
from medimage.local.functions import LocalFunction, template_functions
from medimage.local.template import Resolver, definition_from_template, load_template, resources_of_type


def default_template() -> Path:
    """``$MEDIMAGE_TEMPLATE``, else the checkout's ``template.yaml``."""
    return Path(os.environ.get("MEDIMAGE_TEMPLATE") or project_file("template.yaml"))


# Settings that only local mode adds: quiet, metric-free handlers with fake credentials.
LOCAL_ENV = {
    "AWS_DEFAULT_REGION": REGION,
    **CREDENTIALS,
    "POWERTOOLS_METRICS_DISABLED": "true",
    "POWERTOOLS_TRACE_DISABLED": "true",
    # Delivery here is one thread: a commit that finds annotation pending fails at once and is retried
    # after the next round has drained the annotate queue, instead of sleeping.
    "ANNOTATION_WAIT_S": "0",
}

# Attempts of an asynchronous (EventBridge) invocation before it counts as failed, as Lambda's default
# of two retries after the first attempt.
ASYNC_ATTEMPTS = 3


def moto_config() -> dict[str, Any]:
    """The moto settings local mode needs: the real ASL interpreter, no Docker for Lambda."""
    return {"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}


@dataclass
class EventSource:
    """A queue a function consumes (an SQS event source, or the local target of an EventBridge rule)."""

    function: str
    queue_url: str
    queue_arn: str
    batch_size: int = 10
    eventbridge: bool = False


@dataclass
class PumpReport:
    invocations: int = 0
    messages: int = 0
    failed_messages: int = 0
    results: list[tuple[str, Any]] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)


class LocalAws:
    """Creates the template's bucket, queues, table, rules and state machine in the active moto mock."""

    def __init__(
        self,
        template_path: Path | None = None,
        parameters: dict[str, str] | None = None,
        env_overrides: dict[str, str] | None = None,
        stack_name: str = "medimage-local",
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
        self.resolver: Resolver | None = None
        self.sagemaker: Any = None

    # ------------------------------------------------------------------ clients
    def client(self, service: str) -> Any:
        return boto3.client(service, region_name=REGION)

    @property
    def bucket(self) -> str:
        return self.refs["DataBucket"]

    @property
    def table(self) -> str:
        return self.refs["CatalogTable"]

    # ------------------------------------------------------------------ creation
    def create(self) -> LocalAws:
        os.environ.update(LOCAL_ENV)
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
        self.resolver = Resolver(self.template, self.refs, self.attrs, self.parameters, REGION, ACCOUNT)
        self._create_functions()
        self._create_state_machines()
        for logical, res in resources_of_type(self.template, "AWS::S3::Bucket").items():
            self._configure_notifications(logical, res)
        self._create_rules()
        return self

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
        attributes = {}
        if "RedrivePolicy" in props:
            attributes["RedrivePolicy"] = json.dumps(props["RedrivePolicy"])
        if "VisibilityTimeout" in props:
            # Local delivery retries at once instead of after the deployed timeout.
            attributes["VisibilityTimeout"] = "0"
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
            self.root, self.template, self.resolver, names, {**LOCAL_ENV, **self.env_overrides}
        )
        mappings = [
            (logical, event["Properties"]["Queue"], event["Properties"])
            for logical, res in resources_of_type(self.template, "AWS::Serverless::Function").items()
            for event in res.get("Properties", {}).get("Events", {}).values()
            if event.get("Type") == "SQS"
        ]
        mappings += [
            (self.resolver.resolve(props["FunctionName"]), props["EventSourceArn"], props)
            for props in (
                res["Properties"]
                for res in resources_of_type(self.template, "AWS::Lambda::EventSourceMapping").values()
            )
        ]
        for function, queue, props in mappings:
            queue_arn = self.resolver.resolve(queue)
            if function not in self.functions or not queue_arn.startswith("arn:aws:sqs:"):
                continue
            logical_queue = next(k for (k, a), v in self.attrs.items() if a == "Arn" and v == queue_arn)
            self.sources.append(
                EventSource(function, self.refs[logical_queue], queue_arn, int(props.get("BatchSize", 10)))
            )

    def _create_state_machines(self) -> None:
        """Each state machine from its ASL file with the template's substitutions resolved. Call inside
        ``running()`` when executions must run: moto builds the task states at creation time."""
        assert self.resolver is not None
        sfn = self.client("stepfunctions")
        for logical in resources_of_type(self.template, "AWS::Serverless::StateMachine"):
            definition = definition_from_template(self.root, self.template, self.resolver, logical)
            arn = sfn.create_state_machine(
                name=f"{self.stack_name}-{logical}",
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
        notification: dict[str, Any] = {}
        if config.get("QueueConfigurations"):
            notification["QueueConfigurations"] = [
                {
                    "QueueArn": q["Queue"],
                    "Events": [q["Event"]],
                    **(
                        {"Filter": {"Key": {"FilterRules": q["Filter"]["S3Key"]["Rules"]}}}
                        if "Filter" in q
                        else {}
                    ),
                }
                for q in config["QueueConfigurations"]
            ]
        if config.get("EventBridgeConfiguration", {}).get("EventBridgeEnabled"):
            notification["EventBridgeConfiguration"] = {}
        self.client("s3").put_bucket_notification_configuration(
            Bucket=self.refs[logical], NotificationConfiguration=notification
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
                # A failed asynchronous invocation is retried on the next delivery round.
                self.client("sqs").set_queue_attributes(
                    QueueUrl=self.refs[queue], Attributes={"VisibilityTimeout": "0"}
                )
                rule = f"{self.stack_name}-{logical}-{name}"
                events.put_rule(Name=rule, EventPattern=json.dumps(pattern), State="ENABLED")
                events.put_targets(Rule=rule, Targets=[{"Id": "local", "Arn": self.attrs[(queue, "Arn")]}])
                self.sources.append(
                    EventSource(logical, self.refs[queue], self.attrs[(queue, "Arn")], 1, eventbridge=True)
                )

    @contextmanager
    def running(
        self, trainer: Any = None, work_dir: Path | None = None, retry_delay_scale: float = 1.0
    ) -> Iterator[LocalAws]:
        """The whole local pipeline: moto with the real ASL interpreter, Lambda Task states routed to
        the real handlers, SageMaker training run by ``trainer`` (default: the real train.py)."""
        from moto import mock_aws

        from medimage.adapters.aws import reset_clients
        from medimage.local.moto_patches import local_training_workflow
        from medimage.local.sagemaker import LocalSageMaker, run_train_py

        invokers: dict[str, Any] = {}
        sagemaker = LocalSageMaker(trainer=trainer or run_train_py, work_dir=work_dir)
        with mock_aws(config=moto_config()):
            reset_clients()
            with local_training_workflow(invokers, sagemaker, retry_delay_scale):
                self.create()
                invokers.update({name: fn.invoke for name, fn in self.functions.items()})
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
        polled = [s for s in self.sources if not s.eventbridge]
        for _ in range(max_rounds):
            delivered = 0
            for _ in range(max_rounds):
                drained = sum(self._deliver(source, report) for source in polled)
                delivered += drained
                if not drained:
                    break
            delivered += sum(self._deliver(source, report) for source in self.sources if source.eventbridge)
            if not delivered:
                break
        return report

    def _deliver(self, source: EventSource, report: PumpReport) -> int:
        sqs = self.client("sqs")
        messages = sqs.receive_message(
            QueueUrl=source.queue_url,
            MaxNumberOfMessages=source.batch_size,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not messages:
            return 0
        function = self.functions[source.function]
        if source.eventbridge:
            for message in messages:
                attempt = int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
                try:
                    result = function.invoke(json.loads(message["Body"]))
                except Exception as exc:
                    report.errors.append((source.function, f"{type(exc).__name__}: {exc}"))
                    if attempt < ASYNC_ATTEMPTS:
                        continue  # visible again at once (local visibility timeout 0): the retry
                    report.failed_messages += 1
                else:
                    report.results.append((source.function, result))
                sqs.delete_message(QueueUrl=source.queue_url, ReceiptHandle=message["ReceiptHandle"])
            report.invocations += len(messages)
            report.messages += len(messages)
            return len(messages)
        event = {"Records": [sqs_record(m, source.queue_arn) for m in messages]}
        result = function.invoke(event)
        report.invocations += 1
        report.messages += len(messages)
        report.results.append((source.function, result))
        failed = {f["itemIdentifier"] for f in (result or {}).get("batchItemFailures", [])}
        report.failed_messages += len(failed)
        for message in messages:
            if message["MessageId"] not in failed:
                sqs.delete_message(QueueUrl=source.queue_url, ReceiptHandle=message["ReceiptHandle"])
        return len(messages)


def sqs_record(message: dict[str, Any], queue_arn: str) -> dict[str, Any]:
    """An SQS message as the Lambda event source mapping hands it to a function."""
    attributes = message.get("Attributes", {})
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": {
            "ApproximateReceiveCount": attributes.get("ApproximateReceiveCount", "1"),
            "SentTimestamp": attributes.get("SentTimestamp", "0"),
            "SenderId": attributes.get("SenderId", ACCOUNT),
            "ApproximateFirstReceiveTimestamp": attributes.get("ApproximateFirstReceiveTimestamp", "0"),
        },
        "messageAttributes": message.get("MessageAttributes", {}),
        "md5OfBody": message["MD5OfBody"],
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": REGION,
    }
