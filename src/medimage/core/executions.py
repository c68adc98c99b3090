"""The training execution contract: the input the state machine takes and the names executions get.

The split function and `medimage pipeline start` both start executions; `medimage pipeline list` finds a
dataset's executions by name. All three read the rules here (docs/CONTRACTS.md, "Training execution").
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from medimage.core.errors import BadExecutionInput, MedimageError
from medimage.core.layout import check_dataset_name

# Step Functions execution names: at most 80 characters of [A-Za-z0-9-_].
NAME_LIMIT = 80
# The terminal statuses of a Step Functions execution.
TERMINAL_STATUSES = frozenset({"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"})


def execution_input(
    dataset: str,
    preset: str,
    manifest_version: str,
    bucket: str,
    manifest_prefix: str,
    hyperparameters: dict[str, Any] | None = None,
    shards: bool = False,
) -> dict[str, Any]:
    """``{"dataset", "preset", "manifest_version", "bucket", "manifest_prefix"}`` (+ ``hyperparameters``:
    overrides of the template's defaults, as strings; the ``sagemaker_*`` script settings are not theirs;
    + ``"input": "shards"`` when the version is trained from TFRecord shards, see ``core.shards``)."""
    payload: dict[str, Any] = {
        "dataset": dataset,
        "preset": preset,
        "manifest_version": manifest_version,
        "bucket": bucket,
        "manifest_prefix": manifest_prefix,
    }
    if hyperparameters:
        reserved = sorted(k for k in hyperparameters if k.startswith("sagemaker_"))
        if reserved:
            raise BadExecutionInput(f"hyperparameters {reserved} are script settings, not overridable")
        payload["hyperparameters"] = {k: str(v) for k, v in hyperparameters.items()}
    if shards:
        payload["input"] = "shards"
    return payload


def name_prefix(dataset: str) -> str:
    """Executions of a dataset are named ``<dataset>-<manifest version>…``."""
    return f"{dataset}-".replace(".", "-")


def commit_execution_name(dataset: str, version: str) -> str:
    """The name of the one execution a commit starts: derived from the manifest version, so a second
    delivery of the same commit finds it already there. A longer name keeps its last 80 characters
    (the version's unique end); `may_belong_to` accepts those."""
    return (name_prefix(dataset) + version.replace(".", "-"))[-NAME_LIMIT:]


def manual_execution_name(dataset: str, version: str, now: datetime | None = None) -> str:
    """Unique per start (a closed execution's name cannot be reused); it keeps the whole dataset prefix
    so that listing finds it, cutting the version instead."""
    suffix = "-r" + (now or datetime.now(UTC)).strftime("%Y%m%d%H%M%S")
    return (name_prefix(dataset) + version.replace(".", "-"))[: NAME_LIMIT - len(suffix)] + suffix


def may_belong_to(name: str, dataset: str) -> bool:
    """Whether an execution of this name may be the dataset's (confirm with its input): its prefix, or a
    commit name cut to the limit."""
    return name.startswith(name_prefix(dataset)) or len(name) == NAME_LIMIT


@dataclass(frozen=True)
class TrainingResult:
    """The fields of the DescribeTrainingJob-shaped output of the Train state that the gate needs."""

    job_name: str
    status: str
    model_artifacts: str
    final_metrics: list[dict[str, Any]]

    @classmethod
    def from_task_output(
        cls, data: dict[str, Any], error: type[MedimageError] = BadExecutionInput
    ) -> TrainingResult:
        """``error`` names the task whose input was wrong (the gate's or promote's own error)."""
        try:
            return cls(
                job_name=str(data["TrainingJobName"]),
                status=str(data.get("TrainingJobStatus", "")),
                model_artifacts=str(data["ModelArtifacts"]["S3ModelArtifacts"]),
                final_metrics=list(data.get("FinalMetricDataList") or []),
            )
        except (KeyError, TypeError) as exc:
            raise error(f"the training result lacks {exc}: expected a DescribeTrainingJob shape") from None


@dataclass(frozen=True)
class ModelTask:
    """What every task after training is given: the dataset, the bucket and the Train state's output."""

    dataset: str
    bucket: str
    training: TrainingResult

    @property
    def version(self) -> str:
        """A model's version is the name of the training job that made it (unique, sortable by data)."""
        return self.training.job_name

    @staticmethod
    def fields(event: dict[str, Any], error: type[MedimageError]) -> dict[str, Any]:
        """The common fields of a task's input; ``error`` (the task's own) names a missing one."""
        try:
            return {
                "dataset": check_dataset_name(str(event["dataset"])),
                "bucket": str(event["bucket"]),
                "training": TrainingResult.from_task_output(event["training"], error),
            }
        except KeyError as exc:
            raise error(f"the task input lacks {exc}") from None
