"""The real statemachine/training.asl.json, run by moto's interpreter end to end with a tiny model.

One module-scoped sequence of executions on one dataset (two real trainings; identical jobs reuse a
trained model, see MemoTrainer), then each test checks one scenario's outcome.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import pytest

from medimage.adapters.transient import TransientError
from medimage.core import layout
from tests.orchestration.conftest import BAD, GOOD, Orchestration, write_dataset
from tests.orchestration.workflow_helpers import ExecutionResult

# One worker runs the module: its workflow fixture trains models once, not once per worker.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("workflow")]

DATASET = "chest"
VERSION = "20261125T190500Z-1a2b3c4d"
POINTER = layout.production_pointer_key(DATASET)


@dataclass
class Step:
    result: ExecutionResult
    pointer_after: dict[str, Any] | None
    gate_calls: int = 0


@pytest.fixture(scope="module")
def steps(orchestration: Orchestration) -> dict[str, Step]:
    o = orchestration
    payload = write_dataset(o.s3, o.bucket, DATASET, VERSION)
    gate_env = o.functions["GateFunction"].environment
    done: dict[str, Step] = {}

    def run(name: str, execution_input: dict[str, Any]) -> None:
        result = o.run(execution_input, name=name)
        done[name] = Step(result, o.get_json(POINTER))

    run("useless-first-model", {**payload, "hyperparameters": BAD})
    run("good-first-model", {**payload, "hyperparameters": GOOD})
    gate_env["MIN_ACCURACY_OVERRIDE"] = "0"
    try:
        run("useless-challenger", {**payload, "hyperparameters": BAD})
    finally:
        del gate_env["MIN_ACCURACY_OVERRIDE"]
    run("equal-challenger", {**payload, "hyperparameters": GOOD})
    real_gate = o.invokers["GateFunction"]

    def undecided_gate(event: dict[str, Any]) -> Any:
        # The real decision with the outcome a too-small test split gives (its rule: the gate's own tests).
        decision = real_gate(event)
        return {**decision, "passed": False, "outcome": "insufficient_evidence", "images_needed": 1662}

    o.invokers["GateFunction"] = undecided_gate
    try:
        run("undecided-challenger", {**payload, "hyperparameters": GOOD})
    finally:
        o.invokers["GateFunction"] = real_gate
    run("training-crashes", {**payload, "hyperparameters": {**GOOD, "epochs": "many"}})

    calls = []

    def failing_gate(event: dict[str, Any]) -> Any:
        calls.append(event)
        raise TransientError("S3 kept answering SlowDown")

    o.invokers["GateFunction"] = failing_gate
    try:
        run("gate-keeps-failing", {**payload, "hyperparameters": GOOD})
    finally:
        o.invokers["GateFunction"] = real_gate
    done["gate-keeps-failing"].gate_calls = len(calls)
    done["notifications"] = o.notifications()  # type: ignore[assignment]
    return done


def version_of(step: Step) -> str:
    return step.result.output["training"]["TrainingJobName"]


def gate_record(o: Orchestration, step: Step) -> dict[str, Any]:
    return o.get_json(step.result.output["gate"]["decision"]["gate_key"])


def test_a_model_below_the_thresholds_is_rejected_and_nothing_is_promoted(orchestration, steps):
    step = steps["useless-first-model"]
    assert step.result.status == "SUCCEEDED"
    assert step.result.states_entered()[-2:] == ["GatePassed", "Rejected"]
    assert step.pointer_after is None
    record = gate_record(orchestration, step)
    assert record["passed"] is False
    assert {c["check"] for c in record["checks"] if not c["passed"]} >= {"min_accuracy"}
    assert record["champion"] is None
    assert any("min_accuracy 0.9000" in r for r in record["reasons"])
    # The gate read the trainer's evaluation.json: its numbers, not only the job's metric lines.
    assert record["metrics"]["n"] == 8 and record["metrics"]["accuracy"] < 0.9


def test_a_good_first_model_is_promoted_and_the_pointer_names_it(orchestration, steps):
    step = steps["good-first-model"]
    assert step.result.status == "SUCCEEDED"
    assert step.result.states_entered()[-2:] == ["Promote", "Promoted"]
    version = version_of(step)
    assert len(version) <= 63 and version.startswith(VERSION)
    pointer = step.pointer_after
    prefix = layout.model_prefix(DATASET, version)
    assert pointer["version"] == version
    served = json.loads(
        orchestration.s3.get_object(Bucket=orchestration.bucket, Key=prefix + "model.json")["Body"].read()
    )["model_file"]  # int8 when the trainer found it at parity with float, else float
    assert served in ("model.tflite", "model-int8.tflite")
    assert pointer["model_key"] == prefix + served
    assert [h["version"] for h in pointer["history"]] == [version]
    assert pointer["metrics"]["accuracy"] >= 0.9 and pointer["metrics"]["manifest_version"] == VERSION
    keys = {
        o["Key"]
        for o in orchestration.s3.list_objects_v2(Bucket=orchestration.bucket, Prefix=prefix)["Contents"]
    }
    assert {
        prefix + n
        for n in (
            "model.tflite",
            "model-int8.tflite",
            "model.keras",
            "labels.txt",
            "model.json",
            "evaluation.json",
            "gate.json",
        )
    } <= keys
    model = orchestration.s3.get_object(Bucket=orchestration.bucket, Key=pointer["model_key"])["Body"].read()
    assert hashlib.sha256(model).hexdigest() == pointer["model_sha256"]


def test_a_challenger_worse_than_the_champion_is_rejected_and_production_is_kept(orchestration, steps):
    step = steps["useless-challenger"]
    champion = steps["good-first-model"]
    assert step.result.states_entered()[-1] == "Rejected"
    assert step.pointer_after == champion.pointer_after
    record = gate_record(orchestration, step)
    assert record["thresholds"]["min_accuracy"] == 0.0  # the override left only the comparisons
    failed = {c["check"]: c["detail"] for c in record["checks"] if not c["passed"]}
    assert "champion" in failed and version_of(champion) in failed["champion"]
    assert record["champion"]["version"] == version_of(champion)
    assert record["champion"]["metrics"]["manifest_version"] == record["metrics"]["manifest_version"]


def test_an_equal_challenger_passes_the_tie_and_becomes_production(steps):
    step = steps["equal-challenger"]
    first = version_of(steps["good-first-model"])
    assert step.result.states_entered()[-1] == "Promoted"
    assert step.result.output["promotion"]["result"]["previous_version"] == first
    assert [h["version"] for h in step.pointer_after["history"]] == [version_of(step), first]


def test_a_gate_without_enough_evidence_ends_apart_and_promotes_nothing(steps):
    step = steps["undecided-challenger"]
    assert step.result.status == "SUCCEEDED"
    assert step.result.states_entered()[-2:] == ["GatePassed", "InsufficientEvidence"]
    assert "Promote" not in step.result.states_entered()
    assert step.result.output["gate"]["decision"]["images_needed"] == 1662
    assert step.pointer_after == steps["equal-challenger"].pointer_after


def test_a_training_failure_takes_the_failure_path_and_records_why(orchestration, steps):
    step = steps["training-crashes"]
    assert step.result.status == "FAILED"
    assert step.result.error == "TrainingPipelineFailed"
    assert step.result.states_entered()[-5:] == [
        "TrainFailed",
        "DescribeFailure",
        "RecordFailure",
        "NotifyFailure",
        "Failed",
    ]
    assert "Gate" not in step.result.states_entered()
    record = orchestration.get_json(f"training/{DATASET}/failures/training-crashes.json")
    assert record["failed_state"] == "Train" and record["error"] == "States.TaskFailed"
    description = json.loads(record["cause"])  # the job's description, as Step Functions reports it
    assert description["TrainingJobStatus"] == "Failed"
    assert "AlgorithmError" in description["FailureReason"] and "epochs" in description["FailureReason"]
    assert step.pointer_after == steps["equal-challenger"].pointer_after
    notified = [n for n in steps["notifications"] if n["execution"].endswith(":training-crashes")]
    assert notified and notified[0]["failed_state"] == "Train"


def test_a_failing_gate_is_retried_then_fails_and_nothing_is_promoted(orchestration, steps):
    step = steps["gate-keeps-failing"]
    assert step.result.status == "FAILED"
    assert step.gate_calls == 4  # the first attempt and three retries
    assert len(step.result.events("TaskFailed")) >= 4
    assert "Promote" not in step.result.states_entered()
    record = orchestration.get_json(f"training/{DATASET}/failures/gate-keeps-failing.json")
    assert record["failed_state"] == "Gate" and record["error"] == "TransientError"
    assert "SlowDown" in record["cause"]
    assert step.pointer_after == steps["equal-challenger"].pointer_after
    notified = [n for n in steps["notifications"] if n["execution"].endswith(":gate-keeps-failing")]
    assert notified and notified[0]["error"] == "TransientError"


def test_training_ran_only_for_distinct_jobs(orchestration, steps):
    # Two real trainings (useless, good): the repeated jobs reused them; the crash never produced a model.
    assert orchestration.sagemaker.trainer.runs == 3


def test_the_champion_is_measured_with_litert_when_the_manifest_differs(orchestration, steps):
    from medimage.adapters.s3 import S3ObjectStore
    from medimage.core.registry import ProductionPointer
    from medimage.evaluation.champion import LiteRTChampionEvaluator

    champion = ProductionPointer.from_dict(steps["equal-challenger"].pointer_after).current
    store = S3ObjectStore(orchestration.bucket, s3=orchestration.s3)
    measured = LiteRTChampionEvaluator(store).evaluate(champion, f"manifests/{DATASET}/{VERSION}/", "other")
    # Served by LiteRT from the registry's files, on the same images the trainer evaluated.
    assert measured.manifest_version == "other" and measured.n == champion.metrics["n"]
    assert measured.accuracy == pytest.approx(champion.metrics["accuracy"], abs=1e-6)


def test_rollback_restores_the_previous_version_and_serving_follows(orchestration, steps, tmp_path, capsys):
    from medimage.adapters.model_store import S3ModelStore
    from medimage.cli.main import main
    from medimage.inference.cache import ModelCache

    first, second = version_of(steps["good-first-model"]), version_of(steps["equal-challenger"])
    cache = ModelCache(S3ModelStore(orchestration.bucket, cache_dir=tmp_path), check_interval_s=0)
    assert cache.get(DATASET).version == second

    assert main(["model", "list", "--dataset", DATASET, "--bucket", orchestration.bucket]) == 0
    listed = capsys.readouterr().out
    assert listed.index(second) < listed.index(first)

    assert main(["model", "rollback", "--dataset", DATASET, "--bucket", orchestration.bucket]) == 0
    pointer = orchestration.get_json(POINTER)
    assert pointer["version"] == first
    assert [h["version"] for h in pointer["history"]] == [first]
    assert pointer["rolled_back"][0]["version"] == second
    assert cache.get(DATASET).version == first

    assert main(["model", "rollback", "--dataset", DATASET, "--bucket", orchestration.bucket]) == 2
    assert "nothing to roll back" in capsys.readouterr().err
