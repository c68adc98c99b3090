"""Start and follow executions of the deployed training state machine (`medimage pipeline`).

Uses the boto3 Step Functions client directly. The Step Functions Data Science SDK (`stepfunctions` 2.3.0,
which needs `sagemaker<3`) was the original plan, but `sagemaker` 2.257 requires attrs<26, packaging<25 and
protobuf<7 (and its `sagemaker-core` rich<15, its `graphene` graphql-core<3.3), all older than this project's
pins; and the three calls needed here (start, describe + history, list) are plain API calls.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from medimage.adapters.s3 import S3ObjectStore
from medimage.core import layout
from medimage.core.errors import PipelineProblem
from medimage.core.executions import (
    TERMINAL_STATUSES,
    BadExecutionInput,
    manual_execution_name,
    may_belong_to,
)
from medimage.core.executions import execution_input as contract_input
from medimage.ops.manifests import find_manifest

# Names of the states in statemachine/training.asl.json that this module reads outputs of.
GATE_STATE = "Gate"
JOB_STATES = ("ResolveJob", "ApplyHyperparameterOverrides")


@dataclass
class ExecutionView:
    """What a person wants to know about one execution."""

    arn: str
    name: str
    status: str
    started: datetime | None = None
    stopped: datetime | None = None
    input: dict[str, Any] = field(default_factory=dict)
    current_step: str | None = None
    model_version: str | None = None
    gate: dict[str, Any] | None = None  # the gate task's decision, enriched from gate.json when present
    error: str | None = None

    @property
    def dataset(self) -> str | None:
        return self.input.get("dataset")

    def to_dict(self) -> dict[str, Any]:
        return {
            "execution_arn": self.arn,
            "name": self.name,
            "status": self.status,
            "started": self.started.isoformat() if self.started else None,
            "stopped": self.stopped.isoformat() if self.stopped else None,
            "dataset": self.dataset,
            "manifest_version": self.input.get("manifest_version"),
            "current_step": self.current_step,
            "model_version": self.model_version,
            "gate": self.gate,
            "error": self.error,
        }


def _json(text: str | None) -> dict[str, Any]:
    try:
        value = json.loads(text or "{}")
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _get_json(s3: Any, bucket: str, key: str) -> dict[str, Any] | None:
    return S3ObjectStore(bucket, s3).get_json(key)


def execution_input(
    s3: Any,
    bucket: str,
    dataset: str,
    preset: str | None = None,
    hyperparameters: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The training execution input for the dataset's latest manifest (docs/CONTRACTS.md), as the split
    Lambda builds it; the preset comes from the manifest's stats.json unless given (`find_manifest`)."""
    manifest = find_manifest(S3ObjectStore(bucket, s3), dataset, preset=preset)
    try:
        # A version with a shard plan trains from its shards: the workflow packs any not packed yet.
        return contract_input(
            manifest.dataset,
            manifest.preset,
            manifest.version,
            bucket,
            manifest.prefix,
            hyperparameters,
            shards=bool(manifest.shards),
        )
    except BadExecutionInput as exc:
        raise PipelineProblem(exc.message) from None


def start(sfn: Any, state_machine_arn: str, payload: dict[str, Any], name: str | None = None) -> str:
    name = name or manual_execution_name(payload["dataset"], payload["manifest_version"])
    res = sfn.start_execution(stateMachineArn=state_machine_arn, name=name, input=json.dumps(payload))
    return str(res["executionArn"])


def list_executions(
    sfn: Any, state_machine_arn: str, dataset: str, limit: int = 10, scan: int = 200
) -> list[ExecutionView]:
    """The dataset's most recent executions, newest first. Candidates are chosen by name (one list call
    per 100 executions, at most ``scan``), then confirmed by their input's dataset."""
    candidates: list[dict[str, Any]] = []
    seen = 0
    for page in sfn.get_paginator("list_executions").paginate(
        stateMachineArn=state_machine_arn, PaginationConfig={"PageSize": 100}
    ):
        for item in page.get("executions", []):
            seen += 1
            if may_belong_to(item["name"], dataset):
                candidates.append(item)
        if seen >= scan:
            break
    candidates.sort(key=lambda e: e.get("startDate") or datetime.min.replace(tzinfo=UTC), reverse=True)
    views: list[ExecutionView] = []
    for item in candidates:
        view = _describe(sfn, item["executionArn"])
        if view.dataset == dataset:
            views.append(view)
        if len(views) >= limit:
            break
    return views


def latest_execution_arn(sfn: Any, state_machine_arn: str, dataset: str) -> str:
    found = list_executions(sfn, state_machine_arn, dataset, limit=1)
    if not found:
        raise PipelineProblem(
            f"no executions for dataset {dataset!r} on {state_machine_arn}: "
            f"start one with `medimage pipeline start --dataset {dataset}`"
        )
    return found[0].arn


def _describe(sfn: Any, arn: str) -> ExecutionView:
    d = sfn.describe_execution(executionArn=arn)
    view = ExecutionView(
        arn=arn,
        name=d["name"],
        status=d["status"],
        started=d.get("startDate"),
        stopped=d.get("stopDate"),
        input=_json(d.get("input")),
    )
    if d.get("error") or d.get("cause"):
        view.error = ": ".join(str(x) for x in (d.get("error"), d.get("cause")) if x)
    if d.get("output"):
        output = _json(d["output"])
        view.model_version = (output.get("job") or {}).get("job_name")
        view.gate = (output.get("gate") or {}).get("decision")
    return view


def status(sfn: Any, s3: Any, arn: str, history_events: int = 200) -> ExecutionView:
    """State, current (or last) step, model version and gate decision of one execution. The gate's
    numbers come from gate.json in the bucket when it is there (the gate writes it also for rejections)."""
    view = _describe(sfn, arn)
    events = sfn.get_execution_history(executionArn=arn, reverseOrder=True, maxResults=history_events).get(
        "events", []
    )
    events = sorted(events, key=lambda e: e.get("id", 0), reverse=True)
    for event in events:
        entered = event.get("stateEnteredEventDetails")
        if entered and view.current_step is None:
            view.current_step = entered.get("name")
        exited = event.get("stateExitedEventDetails")
        if not exited:
            continue
        output = _json(exited.get("output"))
        if exited.get("name") == GATE_STATE and view.gate is None:
            view.gate = (output.get("gate") or {}).get("decision")
        if exited.get("name") in JOB_STATES and view.model_version is None:
            view.model_version = (output.get("job") or {}).get("job_name")
    view.model_version = view.model_version or (view.gate or {}).get("version")
    bucket, dataset = view.input.get("bucket"), view.dataset
    gate_key = (view.gate or {}).get("gate_key")
    if not gate_key and dataset and view.model_version:
        gate_key = layout.model_prefix(dataset, view.model_version) + "gate.json"
    if bucket and gate_key:
        record = _get_json(s3, bucket, gate_key)
        if record is not None:
            metrics = record.get("metrics") or {}
            view.gate = {
                **(view.gate or {}),
                "passed": record.get("passed"),
                "outcome": record.get("outcome"),
                "images_needed": record.get("images_needed"),
                "class_images_needed": record.get("class_images_needed") or {},
                "reasons": record.get("reasons", []),
                "accuracy": metrics.get("accuracy"),
                "recall": metrics.get("recall"),
                "thresholds": record.get("thresholds"),
                "champion_version": (record.get("champion") or {}).get("version"),
                "gate_key": gate_key,
            }
    return view


def describe_lines(view: ExecutionView) -> list[str]:
    """A short human report of one execution."""
    lines = [f"{view.name}: {view.status}"]
    if view.dataset:
        lines.append(f"  dataset {view.dataset}, manifest {view.input.get('manifest_version')}")
    if view.started:
        end = f", stopped {view.stopped:%Y-%m-%d %H:%M:%S}" if view.stopped else ""
        lines.append(f"  started {view.started:%Y-%m-%d %H:%M:%S}{end}")
    if view.current_step:
        label = "current step" if view.status == "RUNNING" else "last step"
        lines.append(f"  {label}: {view.current_step}")
    if view.model_version:
        lines.append(f"  model version: {view.model_version}")
    if view.gate:
        lines += gate_lines(view.gate)
    if view.error:
        lines.append(f"  error: {view.error}")
    lines.append(f"  {view.arn}")
    return lines


def gate_lines(gate: dict[str, Any]) -> list[str]:
    """The gate's verdict, accuracy and reasons; when the test split could not tell, how many test images
    would (a gate without an outcome, from before it had one, is passed or rejected)."""
    if gate.get("outcome") == "insufficient_evidence":
        verdict = "insufficient evidence (not promoted)"
    else:
        verdict = {True: "passed", False: "rejected"}.get(gate.get("passed"), "pending")
    acc = gate.get("accuracy")
    lines = [f"  gate: {verdict}" + (f", accuracy {acc:.4f}" if isinstance(acc, int | float) else "")]
    lines += [f"    - {reason}" for reason in gate.get("reasons") or []]
    if gate.get("outcome") == "insufficient_evidence":
        per_class = ", ".join(
            f"{n} '{label}'" for label, n in (gate.get("class_images_needed") or {}).items()
        )
        needed = gate.get("images_needed")
        if needed is not None:
            lines.append(
                f"  images needed: a test split of about {needed} images"
                + (f" (with {per_class} images)" if per_class else "")
                + " would decide; add labeled images and commit again"
            )
    return lines


def wait_for_execution(
    sfn: Any, arn: str, timeout_s: float = 3600.0, poll_s: float = 0.5, sleep: Any = None
) -> dict[str, Any]:
    """Poll DescribeExecution until the execution ends; its last description. TimeoutError after
    ``timeout_s`` while it still runs."""
    import time

    pause = sleep or time.sleep
    deadline = time.monotonic() + timeout_s
    while True:
        described = sfn.describe_execution(executionArn=arn)
        if described["status"] in TERMINAL_STATUSES:
            return dict(described)
        if time.monotonic() > deadline:
            raise TimeoutError(f"execution {arn} still {described['status']} after {timeout_s:.0f} s")
        pause(poll_s)
