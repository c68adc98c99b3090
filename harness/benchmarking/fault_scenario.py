"""The fault run's scenario on a running local stack: redeliveries, concurrent uploaders, two commits at
once, two executions finishing at once and a rollback during a promotion, in that order, each race timed.
The stack, the injector and the audit around it are ``fault_run``'s."""

from __future__ import annotations

import dataclasses
import json
import random
import threading
import time
from dataclasses import dataclass
from typing import Any

from harness.benchmarking.fault_uploads import DATASET, Upload
from harness.benchmarking.race_wrappers import Gathered, RollbackDuring
from medimage.core import layout
from medimage.core.executions import TERMINAL_STATUSES, execution_input

SPLIT, GATE, PROMOTE = "SplitFunction", "GateFunction", "PromoteFunction"


@dataclass(frozen=True)
class FaultRunOptions:
    rate: float = 0.12  # share of the functions' AWS call attempts answered with a fault
    seed: int = 1
    stack: str = "up"  # "up": moto server on loopback; "in-process": moto in-process
    uploaders: int = 8
    redelivered: int = 30  # uploads whose notification is delivered three times, out of order
    copies: int = 20  # images uploaded again under new keys (duplicates)
    broken: int | None = None  # broken files (quarantined); default: 1 in 25 images, at least 4
    crashes: bool = True
    timeout_s: float = 900.0


class FaultRun:
    def __init__(self, env: Any, injector: Any, options: FaultRunOptions) -> None:
        self.env = env
        self.injector = injector
        self.options = options
        self.s3 = env.client("s3")
        self.sqs = env.client("sqs")
        self.sfn = env.client("stepfunctions")
        self.source = {s.function: s for s in env.sources if not s.eventbridge}
        self.split_source = next(s for s in env.sources if s.function == SPLIT)
        self.deadline = time.monotonic() + options.timeout_s
        self.uploads = 0
        self.pollers: list[threading.Thread] = []

    def put(self, uploads: list[Upload], s3: Any = None) -> None:
        for upload in uploads:
            (s3 or self.s3).put_object(Bucket=self.env.bucket, Key=upload.key, Body=upload.data)
            self.uploads += 1

    def left(self) -> float:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"the run took longer than {self.options.timeout_s} s")
        return remaining

    def queue_depth(self, url: str) -> int:
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]) + int(
            attributes["ApproximateNumberOfMessagesNotVisible"]
        )

    def wait_until_idle(self, quiet_s: float = 2.0) -> None:
        """Until every polled queue has been empty (nothing visible or in flight) for ``quiet_s``."""
        quiet_since = None
        while self.left():
            busy = sum(self.queue_depth(s.queue_url) for s in self.env.sources if s.function != SPLIT)
            if busy:
                quiet_since = None
            elif quiet_since is None:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since >= quiet_s:
                return
            time.sleep(0.2)

    def take_messages(self, url: str, n: int, timeout_s: float = 30.0) -> list[dict[str, Any]]:
        """Receive and delete ``n`` messages of ``url`` (S3's test event aside)."""
        taken: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout_s
        while len(taken) < n and time.monotonic() < deadline:
            for message in self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
                self.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
                if "s3:TestEvent" not in message["Body"]:
                    taken.append(message)
        if len(taken) < n:
            raise TimeoutError(f"{len(taken)} of {n} messages arrived on {url}")
        return taken

    def redeliver(self, uploads: list[Upload]) -> dict[str, Any]:
        """Upload, take their notifications off the annotate queue, send each back three times, shuffled."""
        url = self.source["AnnotateFunction"].queue_url
        self.put(uploads)
        bodies = [m["Body"] for m in self.take_messages(url, len(uploads))]
        deliveries = [body for body in reversed(bodies) for _ in range(3)]
        random.Random(self.options.seed).shuffle(deliveries)
        for body in deliveries:
            self.sqs.send_message(QueueUrl=url, MessageBody=body)
        return {"objects": len(bodies), "deliveries": len(deliveries)}

    def upload_at_once(self, plans: list[list[Upload]]) -> dict[str, Any]:
        from harness.faults.races import run_threads

        clients = [self.env.client("s3") for _ in plans]  # made here: creating clients is not thread-safe
        targets = {
            f"uploader-{i}": (lambda p=plan, c=client: self.put(p, c))
            for i, (plan, client) in enumerate(zip(plans, clients, strict=True))
        }
        results = run_threads(targets, timeout_s=self.left())
        failed = {name: repr(r) for name, r in results.items() if isinstance(r, Exception)}
        self.wait_until_idle()
        return {"clients": len(plans), "uploads": sum(len(p) for p in plans), "failed": failed}

    def commit_event(self) -> dict[str, Any]:
        self.s3.put_object(Bucket=self.env.bucket, Key=layout.commit_key(DATASET), Body=b"")
        [message] = self.take_messages(self.split_source.queue_url, 1)
        return dict(json.loads(message["Body"]))

    def two_commits_at_once(self, raw_split: Any) -> dict[str, Any]:
        """One commit event handled by two split containers at once, each retried as Lambda retries an
        asynchronous invocation; both read the catalog before either writes a manifest file."""
        from harness.faults.races import WriteRendezvous, run_threads

        event = self.commit_event()
        racers = {
            name: self.injector.wrap(dataclasses.replace(raw_split, _lock=threading.Lock()))
            for name in ("commit-a", "commit-b")
        }

        def run(function: Any) -> Any:
            for attempt in range(3):
                try:
                    return function.invoke(event)
                except Exception:
                    if attempt == 2:
                        raise
                    time.sleep(0.5)
            return None

        with WriteRendezvous("train.csv", list(racers)):
            results = run_threads({n: (lambda f=f: run(f)) for n, f in racers.items()}, self.left())
        versions = sorted(
            {r["results"][0].get("version", "") for r in results.values() if isinstance(r, dict)} - {""}
        )
        errors = {n: repr(r) for n, r in results.items() if isinstance(r, Exception)}
        ended = self.wait_for_executions()
        return {"manifest_versions": versions, "errors": errors, "executions": len(ended)}

    def two_executions_at_once(self, late: list[Upload], report: Any) -> dict[str, Any]:
        """Two commits (half of ``late`` each) whose trainings wait for each other, so both executions
        end together; their promotions are held until both have arrived."""
        trainer = self.env.sagemaker.trainer
        trainer.barrier = threading.Barrier(2)
        promote = self.env.task_invokers[PROMOTE]
        gathered = Gathered(promote.function, 2)
        promote.function = gathered
        try:
            half = len(late) // 2
            for batch in (late[:half], late[half:]):
                self.put(batch)
                self.wait_until_idle()
                self.commit(report)
            ended = self.wait_for_executions()
        finally:
            trainer.barrier = None
            promote.function = gathered.function
        return {"promotions_held_together": gathered.arrived >= 2, "executions": len(ended)}

    def commit(self, report: Any) -> None:
        """Upload ``_commit`` and deliver its event to split until the queue is empty (retried on failure
        after the queue's delay, as Lambda's asynchronous retries)."""
        self.s3.put_object(Bucket=self.env.bucket, Key=layout.commit_key(DATASET), Body=b"")
        url = self.split_source.queue_url
        while self.left():
            self.env.deliver(self.split_source, report, sqs=self.sqs)
            if not self.queue_depth(url):
                return
            time.sleep(0.2)

    def wait_for_executions(self) -> list[dict[str, Any]]:
        while self.left():
            listed = self.sfn.list_executions(stateMachineArn=self.env.state_machine_arn)["executions"]
            if all(e["status"] in TERMINAL_STATUSES for e in listed):
                return list(listed)
            time.sleep(0.3)
        return []

    def latest_manifest(self) -> str:
        body = self.s3.get_object(Bucket=self.env.bucket, Key=layout.latest_manifest_key(DATASET))["Body"]
        return str(json.loads(body.read())["version"])

    def play(
        self,
        main: list[Upload],
        late: list[Upload],
        extra: list[Upload],
        raw_split: Any,
        stop: threading.Event,
        report: Any,
        races: dict[str, Any],
    ) -> None:
        """The scenario, each race with its own seconds in ``races``: ``main`` uploaded by the clients at
        once (twice each, with ``extra``: copies and broken files), then the commits; ``late`` split in
        two for the two executions that finish at once."""
        from medimage.local.pollers import Poller

        def timed(name: str, action: Any) -> None:
            started = time.monotonic()
            races[name] = action() or {}
            races[name]["seconds"] = round(time.monotonic() - started, 1)

        n = self.options.uploaders
        timed(
            "same_object_three_times_out_of_order", lambda: self.redeliver(main[: self.options.redelivered])
        )
        self.pollers = [Poller(self.env, s, stop, report) for s in self.env.sources if s.function != SPLIT]
        for poller in self.pollers:
            poller.start()
        plans = [share + share + extra[i::n] for i, share in enumerate(main[i::n] for i in range(n))]
        timed("uploaders_at_once", lambda: self.upload_at_once(plans))
        timed("two_commits_at_once", lambda: self.two_commits_at_once(raw_split))
        timed("two_executions_finishing_at_once", lambda: self.two_executions_at_once(late, report))
        order = ["promotion", "rollback"]
        random.Random(self.options.seed).shuffle(order)
        timed("rollback_during_promotion", lambda: self.rollback_during_promotion(order))
        self.wait_until_idle()

    def rollback_during_promotion(self, order: list[str]) -> dict[str, Any]:
        from harness.faults.races import WriteRendezvous
        from medimage.ops.executions import start, wait_for_execution

        invoker = self.env.task_invokers[PROMOTE]
        racing = RollbackDuring(invoker.function, self.env.bucket, self.injector)
        invoker.function = racing
        version = self.latest_manifest()
        payload = execution_input(
            DATASET, DATASET, version, self.env.bucket, layout.manifest_prefix(DATASET, version)
        )
        try:
            with WriteRendezvous(layout.production_pointer_key(DATASET), order, timeout_s=60):
                arn = start(self.sfn, self.env.state_machine_arn, payload)
                described = wait_for_execution(self.sfn, arn, timeout_s=self.left(), poll_s=0.3)
        finally:
            invoker.function = racing.function
        return {"writes_in_order": order, "execution": described["status"], **racing.outcome}
