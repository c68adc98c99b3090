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

This module holds the stack, the injector, the audit and the verdict; the uploads are ``fault_uploads``'s,
the scenario ``fault_scenario``'s and its function wrappers ``race_wrappers``'.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from harness.benchmarking.fault_scenario import GATE, PROMOTE, SPLIT, FaultRun, FaultRunOptions
from harness.benchmarking.fault_uploads import DATASET, Upload, broken_uploads

# Crashes, each once: annotate after its 2nd and 5th AWS call, split after its 3rd, gate after its 1st,
# promote after its 2nd (Lambda reports a dead runtime; SQS redelivers, Step Functions retries).
CRASHES = ((("AnnotateFunction", 2), ("AnnotateFunction", 5)), ((SPLIT, 3), (GATE, 1), (PROMOTE, 2)))
DEFAULT_OPTIONS = FaultRunOptions()


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


def crash_rules(enabled: bool) -> list[Any]:
    from harness.faults.plan import CrashRule

    if not enabled:
        return []
    return [CrashRule(function=f, after_calls=n, times=1) for group in CRASHES for f, n in group]


def run_faults(images: list[Upload], options: FaultRunOptions = DEFAULT_OPTIONS) -> dict[str, Any]:
    """Run the whole scenario on ``images`` and audit it; the figures as one JSON-able dict."""
    from harness.faults.audit import PipelineAuditor
    from harness.faults.injector import FaultInjector
    from harness.faults.plan import FaultKind, FaultRule
    from harness.faults.trainer import QuickTrainer
    from harness.models import tiny_tflite_model
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
