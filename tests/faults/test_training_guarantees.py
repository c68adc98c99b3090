"""Guarantees of the training workflow, on the real statemachine/training.asl.json in moto's interpreter
with the real gate, promote and drop-to-label handlers (``LocalAws.running``); a quick trainer stands in
for train.py (a real, untrained TFLite model) so each execution takes about a second.

- production.json always points at a complete model version whose gate passed; two executions finishing
  at once: one promotion wins, the other is recorded as superseded and gated again;
- a Gate or Promote function that dies after any of its AWS calls is retried to the same end;
- a failed or interrupted training (or a gate or promote that keeps dying) leaves production untouched;
- a drop-to-label function that dies after any of its AWS calls: the redelivered batch labels each image
  once, in one batch file.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from harness.faults.injector import FaultInjector
from harness.faults.plan import CrashRule, FaultKind
from harness.faults.trainer import QuickTrainer
from medimage.core import layout
from medimage.core.executions import execution_input
from medimage.inference.drop_to_label import BATCH_FILE
from medimage.local.environment import LocalAws
from medimage.ops.executions import wait_for_execution
from tests.faults.pipeline import DS, audit, auditor, images, put, wait_for_all

pytestmark = pytest.mark.xdist_group("faults-training")

GATE, PROMOTE, INFERENCE = "GateFunction", "PromoteFunction", "InferenceFunction"


@pytest.fixture
def trainer(tiny_tflite: bytes) -> QuickTrainer:
    return QuickTrainer(model=tiny_tflite)


@pytest.fixture
def stack(trainer: QuickTrainer, tmp_path: Path) -> Iterator[LocalAws]:
    env = LocalAws(
        parameters={"MinNewImages": "1"},
        env_overrides={"MODEL_CACHE_DIR": str(tmp_path / "model-cache"), "MODEL_CHECK_INTERVAL_S": "0"},
    )
    with env.running(trainer=trainer, work_dir=tmp_path, retry_delay_scale=0.01):
        yield env


def commit(env: LocalAws, batch: int, n: int = 10) -> set[str]:
    """Upload ``n`` new images, annotate them and commit; the keys uploaded."""
    upload = images(n, seed=300 + batch, prefix=f"b{batch}-")
    put(env, upload)
    env.pump()
    boto3.client("s3").put_object(Bucket=env.bucket, Key=layout.commit_key(DS), Body=b"")
    env.pump()
    return {k for k, _ in upload}


def pointer(env: LocalAws) -> dict[str, Any] | None:
    s3 = boto3.client("s3")
    try:
        body = s3.get_object(Bucket=env.bucket, Key=layout.production_pointer_key(DS))["Body"].read()
    except s3.exceptions.NoSuchKey:
        return None
    return json.loads(body)


def rerun(env: LocalAws, manifest_version: str) -> dict[str, Any]:
    """Train again on a manifest version (as `medimage pipeline start` does) and wait for the end."""
    sfn = boto3.client("stepfunctions")
    payload = execution_input(
        DS, DS, manifest_version, env.bucket, layout.manifest_prefix(DS, manifest_version)
    )
    arn = sfn.start_execution(
        stateMachineArn=env.state_machine_arn,
        name=f"{DS}-rerun-{uuid.uuid4().hex[:8]}",
        input=json.dumps(payload),
    )["executionArn"]
    described = wait_for_execution(sfn, arn, timeout_s=300, poll_s=0.2)
    described["output"] = json.loads(described.get("output") or "{}")
    return described


class Counting:
    """A function whose finished invocations are counted; ``changed`` is notified after each, so a waiter
    on the count wakes when it moves rather than at its timeout."""

    def __init__(self, function: Any) -> None:
        self.function = function
        self.logical_id = function.logical_id
        self.count = 0
        self.changed = threading.Condition()

    def invoke(self, event: dict[str, Any]) -> Any:
        try:
            return self.function.invoke(event)
        finally:
            with self.changed:
                self.count += 1
                self.changed.notify_all()


class InTurn:
    """A promote function whose first invocation for each manifest version waits until both gates have
    decided and then runs in ``order`` (of manifest versions); a later invocation (after a re-gate) runs
    at once."""

    def __init__(self, function: Any, gate: Counting, order: list[str], timeout_s: float = 30.0) -> None:
        self.function, self.gate, self.order, self.timeout_s = function, gate, order, timeout_s
        self.logical_id = function.logical_id
        self.finished: set[str] = set()
        self._cond = gate.changed

    def invoke(self, event: dict[str, Any]) -> Any:
        job = event["training"]["TrainingJobName"]
        version = next(v for v in self.order if job.startswith(f"{v}-"))
        turn = self.order.index(version)
        with self._cond:
            if version not in self.finished:
                released = self._cond.wait_for(
                    lambda: self.gate.count >= 2 and set(self.order[:turn]) <= self.finished, self.timeout_s
                )
                assert released, f"the promotion of {version} waited in vain"
        try:
            return self.function.invoke(event)
        finally:
            with self._cond:
                self.finished.add(version)
                self._cond.notify_all()


def latest_version(env: LocalAws) -> str:
    body = boto3.client("s3").get_object(Bucket=env.bucket, Key=layout.latest_manifest_key(DS))["Body"]
    return json.loads(body.read())["version"]


@pytest.mark.parametrize("first", ["older", "newer"])
def test_two_executions_finishing_at_once_promote_one_and_record_the_other_as_superseded(
    stack, trainer, first
):
    # GIVEN two commits whose trainings end together, and whose promotions wait until both gates decided,
    # then swap the pointer one after the other. The loser is gated again against the winner on its own
    # test split: 20 images each, so both splits hold test images.
    trainer.barrier = threading.Barrier(2)
    gate = Counting(stack.task_invokers[GATE].function)
    stack.task_invokers[GATE].function = gate
    order: list[str] = []
    promote = stack.task_invokers[PROMOTE]
    promote.function = InTurn(promote.function, gate, order)
    keys = commit(stack, 1, n=20)
    order.append(latest_version(stack))
    keys |= commit(stack, 2, n=20)
    order.append(latest_version(stack))
    if first == "newer":
        order.reverse()
    # WHEN both executions run to their end
    ended = wait_for_all(stack)
    # THEN both succeed; the first promotion won, the other was refused, recorded and gated again: it
    # is promoted if it beats the winner on its own test split, else kept out
    assert [e["status"] for e in ended] == ["SUCCEEDED", "SUCCEEDED"], [e.get("cause") for e in ended]
    assert gate.count == 3
    outputs = {o["training"]["TrainingJobName"]: o for o in (json.loads(e["output"]) for e in ended)}
    winner = next(job for job in outputs if job.startswith(f"{order[0]}-"))
    loser = next(job for job in outputs if job.startswith(f"{order[1]}-"))
    passed_again = outputs[loser]["gate"]["decision"]["passed"]
    assert outputs[loser]["gate"]["decision"]["champion_version"] == winner
    production = pointer(stack)
    assert production is not None
    expected = [loser, winner] if passed_again else [winner]
    assert [e["version"] for e in production["history"]] == expected
    assert [(s["version"], s["by"]) for s in production["superseded"]] == [(loser, winner)]
    checked = audit(stack, keys)
    assert checked.production_version == expected[0] and checked.executions == 2


def clean_calls(stack: LocalAws, function: str, manifest_version: str) -> int:
    with FaultInjector() as injector:
        injector.wrap_local_aws(stack)
        assert rerun(stack, manifest_version)["status"] == "SUCCEEDED"
    return sum(1 for c in injector.calls if c.function == function)


@pytest.mark.parametrize("function", [GATE, PROMOTE])
def test_a_gate_or_promote_that_dies_after_any_aws_call_is_retried_to_the_same_end(stack, function):
    keys = commit(stack, 1)
    [first] = wait_for_all(stack)
    manifest_version = json.loads(first["input"])["manifest_version"]
    invokers = {name: invoker.function for name, invoker in stack.task_invokers.items()}
    steps = clean_calls(stack, function, manifest_version)
    assert steps >= 3
    for step in range(steps):
        for name, original in invokers.items():
            stack.task_invokers[name].function = original
        with FaultInjector(crashes=[CrashRule(function=function, after_calls=step)]) as injector:
            injector.wrap_local_aws(stack)
            ended = rerun(stack, manifest_version)
        assert [f.kind for f in injector.faults] == [FaultKind.CRASH], f"no crash at step {step}"
        assert ended["status"] == "SUCCEEDED", (step, ended.get("error"), ended.get("cause"))
        version = ended["output"]["training"]["TrainingJobName"]
        production = pointer(stack)
        assert production is not None and production["version"] == version
        audit(stack, keys)
    assert len(pointer(stack)["history"]) == steps + 2  # every promotion kept


def test_a_failed_or_interrupted_training_leaves_production_untouched(stack, trainer):
    keys = commit(stack, 1)
    [first] = wait_for_all(stack)
    manifest_version = json.loads(first["input"])["manifest_version"]
    before = pointer(stack)
    assert before is not None

    trainer.fail = True  # the job fails (its algorithm error)
    failed = rerun(stack, manifest_version)
    trainer.fail = False
    assert failed["status"] == "FAILED"

    original = stack.task_invokers[GATE].function
    with FaultInjector(crashes=[CrashRule(function=GATE, after_calls=1, times=10)]) as injector:
        injector.wrap_local_aws(stack)  # the gate dies on every attempt
        interrupted = rerun(stack, manifest_version)
    stack.task_invokers[GATE].function = original
    assert interrupted["status"] == "FAILED" and len(injector.faults) == 4  # first try + 3 retries

    promote_steps = clean_calls(stack, PROMOTE, manifest_version)
    before = pointer(stack)
    with FaultInjector(
        crashes=[CrashRule(function=PROMOTE, after_calls=promote_steps - 1, times=10)]
    ) as injector:
        injector.wrap_local_aws(stack)  # the promote dies just before its swap, every time
        dying = rerun(stack, manifest_version)
    assert dying["status"] == "FAILED"
    assert pointer(stack) == before
    checked = audit(stack, keys)
    assert checked.production_version == before["version"]


def test_drop_to_label_that_dies_after_any_aws_call_labels_each_image_once(stack):
    keys = commit(stack, 1)
    assert wait_for_all(stack)[0]["status"] == "SUCCEEDED"
    s3 = boto3.client("s3")
    dropped: list[str] = []

    def drop(n: int, tag: str) -> list[str]:
        names = [f"{layout.UNLABELED_PREFIX}{DS}/{tag}-{i}.jpeg" for i in range(n)]
        for name, (_, data) in zip(names, images(n, seed=len(dropped) + 7), strict=True):
            s3.put_object(Bucket=stack.bucket, Key=name, Body=data)
        dropped.extend(names)
        return names

    stack.functions[INFERENCE].reset()  # a new container: its clients are made with the injector's hooks
    with FaultInjector() as injector:
        injector.wrap_local_aws(stack)
        drop(3, "clean")
        stack.pump()
    steps = sum(1 for c in injector.calls if c.function == INFERENCE)
    assert steps >= 4
    functions = dict(stack.functions)
    for step in range(steps):
        stack.functions = dict(functions)
        stack.functions[INFERENCE].reset()  # each run from a cold start, as the clean one
        with FaultInjector(crashes=[CrashRule(function=INFERENCE, after_calls=step)]) as injector:
            injector.wrap_local_aws(stack)
            drop(3, f"step{step}")
            report = stack.pump()
        assert any("FunctionCrashed" in e for _, e in report.errors), f"no crash at step {step}"
    stack.functions = functions
    listed: dict[str, int] = {}
    batches = [k["Key"] for k in s3.list_objects_v2(Bucket=stack.bucket, Prefix="predictions/")["Contents"]]
    for key in (k for k in batches if k.endswith(BATCH_FILE)):
        for line in s3.get_object(Bucket=stack.bucket, Key=key)["Body"].read().decode().splitlines():
            name = line.rsplit(" ", 1)[0]
            listed[name] = listed.get(name, 0) + 1
    for key in dropped:
        result = json.loads(
            s3.get_object(Bucket=stack.bucket, Key=layout.prediction_key(DS, key))["Body"].read()
        )
        assert result["key"] == key
        assert listed.get(key.rsplit("/", 1)[1]) == 1, key
    assert auditor(stack).audit(DS, keys).problems() == []
