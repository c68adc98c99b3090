"""The pipeline under AWS faults and races, then audited: nothing lost, nothing twice, production valid.

One run on the local stack of ``medimage up`` (moto in server mode on loopback, in this process, with the
template's resources, SQS pollers and the real Step Functions interpreter; ``stack="in-process"``: the
same on moto in-process) with the real handlers, and the quick trainer of ``harness.faults.trainer`` in
place of train.py. The fault injector answers a share ``rate`` of every AWS call the functions (and the
rollback) make with a server error, throttling or a read timeout after the write, and crashes some
invocations after their Nth call. Meanwhile, in order:

1. the S3 notifications of some uploads are delivered three times each, out of order;
2. 8 clients upload at once: every image twice under its key, some again under new keys, broken files;
3. two ``_commit`` handlers run at once on one commit (both read the catalog before either writes);
4. two commits whose trainings end together, their promotions held until both gates decided;
5. a re-run whose promotion races a rollback of production (``medimage pipeline rollback``).

Then ``harness.faults.audit`` reads the bucket, the catalog and the executions. Used by
``benchmarks/fault_bench.py`` and ``tests/faults/test_fault_bench.py``.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import os
import random
import socket
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medimage.core import layout
from medimage.core.executions import TERMINAL_STATUSES, execution_input

DATASET = "chestxray2017-binary"
SPLIT, GATE, PROMOTE = "SplitFunction", "GateFunction", "PromoteFunction"
IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")
BROKEN_KINDS = ("empty", "truncated", "text", "corrupt-header")
# Crashes, each once: annotate after its 2nd and 5th AWS call, split after its 3rd, gate after its 1st,
# promote after its 2nd (Lambda reports a dead runtime; SQS redelivers, Step Functions retries).
CRASHES = ((("AnnotateFunction", 2), ("AnnotateFunction", 5)), ((SPLIT, 3), (GATE, 1), (PROMOTE, 2)))


@dataclass(frozen=True)
class Upload:
    key: str
    data: bytes


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


def labeled_key(folder: str, name: str) -> str:
    return f"{layout.LABELED_PREFIX}{DATASET}/{folder}/{name}"


def load_images(root: Path, count: int) -> list[Upload]:
    """``count`` images spread evenly over ``root``'s label folders and within each folder (so many
    patients, not the first few), as uploads under ``incoming/labeled/<dataset>/<folder>/``."""
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    if not folders:
        raise ValueError(f"{root} has no label folders")
    per_folder = [count // len(folders) + (1 if i < count % len(folders) else 0) for i in range(len(folders))]
    by_folder: list[list[Upload]] = []
    for folder, wanted in zip(folders, per_folder, strict=True):
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if len(files) < wanted:
            raise ValueError(f"{folder} has {len(files)} images, {wanted} wanted")
        picked = [files[i * len(files) // wanted] for i in range(wanted)]
        by_folder.append([Upload(labeled_key(folder.name, p.name), p.read_bytes()) for p in picked])
    # Interleaved, so that every share of the uploads holds every label.
    return [u for group in itertools.zip_longest(*by_folder) for u in group if u is not None]


def broken_uploads(images: list[Upload], n: int) -> list[Upload]:
    """``n`` files annotate must quarantine, made from the real images: empty, truncated, text, a JPEG
    whose header is overwritten; each in a label folder, so it claims to be a labeled X-ray."""
    out = []
    for i in range(n):
        kind = BROKEN_KINDS[i % len(BROKEN_KINDS)]
        source = images[i % len(images)]
        data = {
            "empty": b"",
            "truncated": source.data[: len(source.data) // 3],
            "text": b"radiology report: no image attached\n" * 8,
            "corrupt-header": source.data[:2] + b"\x00" * 200 + source.data[202:],
        }[kind]
        folder = source.key.rsplit("/", 2)[-2]
        out.append(Upload(labeled_key(folder, f"broken-{i:03d}-{kind}.jpeg"), data))
    return out


# ---------------------------------------------------------------------------------------- the stack
def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def local_stack(kind: str, trainer: Any, work_dir: Path) -> Iterator[Any]:
    """The template's stack with the pipeline running (``LocalAws.running``): on a moto server on
    loopback as ``medimage up`` serves it, or on moto in-process. Queues make a failed message visible
    again after 1 s (the template's minutes would only add waiting)."""
    from medimage.local.environment import LocalAws

    settings: dict[str, Any] = {
        "parameters": {"MinNewImages": "1"},
        "env_overrides": {
            "MODEL_CACHE_DIR": str(work_dir / "model-cache"),
            "MODEL_CHECK_INTERVAL_S": "0",
            "POWERTOOLS_LOG_LEVEL": "WARNING",
            "AWS_LAMBDA_LOG_LEVEL": "WARN",  # the functions in Lambda's JSON log format
        },
        "visibility_timeout_s": 1,
        "concurrent": True,
        "stack_name": "medimage-faults",
    }
    if kind == "in-process":
        env = LocalAws(**settings)
        with env.running(trainer=trainer, work_dir=work_dir, retry_delay_scale=0.01):
            yield env
        return
    if kind != "up":
        raise ValueError(f"unknown stack {kind!r}: up or in-process")
    from moto.moto_server.threaded_moto_server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise, as in `up`
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        env = LocalAws(endpoint_url=f"http://{host}:{port}", **settings)
        with env.running(trainer=trainer, work_dir=work_dir, retry_delay_scale=0.01):
            yield env
    finally:
        server.stop()


# ---------------------------------------------------------------------------------------- wrappers
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


# ---------------------------------------------------------------------------------------- the run
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


def crash_rules(enabled: bool) -> list[Any]:
    from harness.faults.plan import CrashRule

    if not enabled:
        return []
    return [CrashRule(function=f, after_calls=n, times=1) for group in CRASHES for f, n in group]


def run_faults(images: list[Upload], options: FaultRunOptions = FaultRunOptions()) -> dict[str, Any]:
    """Run the whole scenario on ``images`` and audit it; the figures as one JSON-able dict."""
    from harness.faults.audit import PipelineAuditor
    from harness.faults.injector import FaultInjector
    from harness.faults.plan import FaultKind, FaultRule
    from harness.faults.trainer import QuickTrainer, tiny_tflite_model
    from medimage.local.delivery import PumpReport

    held_back = 2 * max(2, len(images) // 50)  # the images of the two late commits
    if len(images) < held_back + 2 * options.uploaders:
        raise ValueError(f"{len(images)} images are too few for this run")
    main, late = images[:-held_back], images[-held_back:]
    # A small run redelivers half its images and copies a quarter of them.
    options = dataclasses.replace(
        options,
        redelivered=min(options.redelivered, len(main) // 2),
        copies=min(options.copies, len(main) // 4),
    )
    n_broken = options.broken if options.broken is not None else max(4, len(images) // 25)
    copies = [Upload(u.key.rsplit(".", 1)[0] + "-copy.jpeg", u.data) for u in main[: options.copies]]
    broken = broken_uploads(images, n_broken)
    keys = {u.key for u in images} | {u.key for u in copies} | {u.key for u in broken}
    started = time.monotonic()
    saved_environ = dict(os.environ)
    trainer = QuickTrainer(model=tiny_tflite_model())
    races: dict[str, Any] = {}
    report = PumpReport()
    try:
        with (
            tempfile.TemporaryDirectory(prefix="fault-run-") as tmp,
            local_stack(options.stack, trainer, Path(tmp)) as env,
        ):
            env.client("s3").put_bucket_versioning(
                Bucket=env.bucket, VersioningConfiguration={"Status": "Enabled"}
            )
            injector = FaultInjector(
                [FaultRule(rate=options.rate, function="*")], crash_rules(options.crashes), seed=options.seed
            )
            injector.activate()
            stop = threading.Event()
            run = FaultRun(env, injector, options)
            try:
                raw = dict(env.functions)
                for function in raw.values():
                    function.reset()  # cold starts: every client is made with the injector's hooks
                    function.load()
                injector.wrap_local_aws(env)
                run.play(main, late, copies + broken, raw[SPLIT], stop, report, races)
            finally:
                stop.set()
                for poller in run.pollers:
                    poller.join(10)
                injector.deactivate()
            statuses = Counter(e["status"] for e in run.wait_for_executions())
            audit = PipelineAuditor(
                env.client("s3"),
                env.client("dynamodb"),
                env.bucket,
                env.table,
                env.client("stepfunctions"),
                env.state_machine_arn,
            ).audit(DATASET, keys)
            dead_letters = {
                logical: run.queue_depth(url)
                for logical, url in env.queue_urls().items()
                if "Dead" in logical
            }
    finally:
        os.environ.clear()
        os.environ.update(saved_environ)
    scoped = sum(n for scope, n in injector.attempts_by_scope.items() if scope is not None)
    answered = [f for f in injector.faults if f.kind is not FaultKind.CRASH]
    return {
        "objects": audit.objects,
        "faults_injected": len(injector.faults),
        "faults_by_service": injector.faults_by_service(),
        "accepted": audit.accepted,
        "quarantined": audit.quarantined,
        "lost": len(audit.lost),
        "duplicate_records": audit.duplicate_records,
        "executions": audit.executions,
        "production_valid": audit.production_version is not None and not audit.production_problems,
        "retries": injector.retries,
        "seconds": round(time.monotonic() - started, 1),
        "faults_by_kind": injector.faults_by_kind(),
        "fault_rate": round(len(answered) / scoped, 4) if scoped else 0.0,
        "function_call_attempts": scoped,
        "aws_calls": len(injector.calls),
        "uploads": run.uploads,
        "images": len(images),
        "copies_under_new_keys": len(copies),
        "broken_files": len(broken),
        "lost_keys": audit.lost[:20],
        "problems": audit.problems(),
        "manifest_versions": len(audit.manifest_versions),
        "executions_per_version": audit.executions_per_version,
        "execution_statuses": dict(sorted(statuses.items())),
        "production_version": audit.production_version,
        "dead_letters": dead_letters,
        "delivery_errors": len(report.errors),
        "races": races,
        "stack": options.stack,
        "rate": options.rate,
        "seed": options.seed,
    }


def shortfalls(result: dict[str, Any], min_faults: int) -> list[str]:
    """What keeps a run from passing: anything lost or recorded twice, no valid production model, fewer
    faults than ``min_faults``, or a guarantee the audit found broken."""
    found = list(result["problems"])
    if result["lost"]:
        found.append(f"{result['lost']} objects lost")
    if result["duplicate_records"]:
        found.append(f"{result['duplicate_records']} duplicate records")
    if not result["production_valid"]:
        found.append("production.json does not name a valid model")
    if result["faults_injected"] < min_faults:
        found.append(f"{result['faults_injected']} faults injected, fewer than {min_faults}")
    return found
