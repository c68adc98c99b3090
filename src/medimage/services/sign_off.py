"""The workflow's side of a person's sign-off (``ApprovalRequired``; rules: ``core.sign_off``).

Four tasks of the training state machine, all run by the promote function (its ``action``):

- ``stage_for_sign_off``: `PromoteService.run(hold=True)`: the model is published and, where a trial is
  configured and production exists, nominated as the candidate; otherwise production is left alone.
  The answer adds ``timeout_seconds`` (from ``ApprovalTimeoutHours``), which the waiting task uses.
- ``request_sign_off`` (the ``.waitForTaskToken`` task): keeps the pending request with its task token in
  ``models/<dataset>/sign-off.json`` and publishes the gate's numbers, the version and where the
  scorecard is (never the token) to the sign-off topic.
- ``sign_off``: applies an approval (the task output `medimage model approve` sent): production.
- ``close_sign_off``: a rejection (the cause `medimage model reject` sent) or a timeout: production is
  untouched, a candidate's trial ends ``rejected`` / ``timed_out``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from medimage.core import layout
from medimage.core.errors import PromoteRefused, RegistryError
from medimage.core.registry import ModelEntry, ProductionPointer, sha256_hex
from medimage.core.sign_off import (
    Decision,
    PendingSignOff,
    SignOffError,
    SignOffRecord,
    approve,
    close,
    end_trial,
    request,
    sign_off_key,
)
from medimage.core.trial import scorecard_key
from medimage.services.ports import Notifier, ObjectStore, PointerStore

ACTIONS = ("stage_for_sign_off", "request_sign_off", "sign_off", "close_sign_off")


@dataclass(frozen=True)
class SignOffTask:
    """The input of the ``request_sign_off``, ``sign_off`` and ``close_sign_off`` tasks."""

    dataset: str
    bucket: str
    version: str
    execution: str
    details: dict[str, Any]

    @classmethod
    def from_event(cls, event: dict[str, Any]) -> SignOffTask:
        try:
            fields = {name: str(event[name]) for name in ("dataset", "bucket", "version", "execution")}
        except KeyError as exc:
            raise SignOffError(f"the sign-off task input lacks {exc}", "bad_sign_off_task") from None
        layout.check_dataset_name(fields["dataset"])
        return cls(**fields, details=event)


def gate_summary(gate: dict[str, Any]) -> dict[str, Any]:
    """The gate's numbers a person reads: its outcome, scalar metrics, the champion and the reasons."""
    metrics = gate.get("metrics") or {}
    return {
        "outcome": gate.get("outcome"),
        "metrics": {k: v for k, v in metrics.items() if isinstance(v, int | float | str)},
        "champion": (gate.get("champion") or {}).get("version"),
        "reasons": list(gate.get("reasons") or []),
    }


class SignOffService:
    def __init__(
        self,
        store: ObjectStore,
        registry: PointerStore,
        notifier: Notifier,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.registry = registry
        self.notifier = notifier
        self.now = now

    def _record(self, dataset: str) -> SignOffRecord:
        return SignOffRecord.from_dict(self.store.get_json(sign_off_key(dataset)), dataset)

    def request(self, task: SignOffTask) -> dict[str, Any]:
        """Keep the pending request (with the task token) and tell the people who sign off."""
        staged = task.details.get("staged") or {}
        token = str(task.details.get("task_token") or "")
        seconds = int(task.details.get("timeout_seconds") or 0)
        if staged.get("version") != task.version:
            raise SignOffError(f"the staged model is not {task.version}", "bad_sign_off_task")
        gate = self.store.get_json(layout.model_prefix(task.dataset, task.version) + "gate.json")
        if not isinstance(gate, dict) or gate.get("passed") is not True:
            raise PromoteRefused(f"{task.version} has no passed gate decision: no sign-off to ask for")
        now = self.now()
        pending = PendingSignOff(
            version=task.version,
            stage=str(staged.get("stage")),
            entry=ModelEntry(
                task.version,
                str(staged["model_key"]),
                str(staged["model_sha256"]),
                now.isoformat(),
                dict(gate.get("metrics") or {}),
            ),
            champion=staged.get("previous_version"),
            task_token=token,
            execution=task.execution,
            requested_at=now.isoformat(),
            expires_at=(now + timedelta(seconds=seconds)).isoformat(),
            gate=gate_summary(gate),
            scorecard_key=scorecard_key(task.dataset, task.version)
            if staged.get("stage") == "candidate"
            else None,
        )
        self.store.put_json(
            sign_off_key(task.dataset), request(self._record(task.dataset), pending).to_dict()
        )
        public = pending.public()
        self.notifier.publish(
            f"medimage {task.dataset}: {task.version} awaits sign-off"[:100],
            json.dumps(
                {
                    "dataset": task.dataset,
                    **public,
                    "approve": f"medimage model approve --dataset {task.dataset} --note '...'",
                    "reject": f"medimage model reject --dataset {task.dataset} --note '...'",
                },
                indent=2,
            ),
        )
        return {"requested": True, **public}

    def approve(self, task: SignOffTask) -> dict[str, Any]:
        """Apply an approval: the model becomes production, the decision kept in its history entry."""
        decision = Decision.from_dict(task.details.get("approval"))
        record = self._record(task.dataset)
        pending = record.pending
        if pending is None or pending.version != task.version or pending.execution != task.execution:
            done = record.decision_of(task.version, task.execution)
            pointer = self.registry.pointer(task.dataset)
            if done is not None and pointer is not None and pointer.ever_promoted(task.version):
                return self._approved(pointer, task, decision)  # a retried task whose work landed
            raise SignOffError(
                f"no sign-off of {task.version} is pending for '{task.dataset}'", "no_sign_off_pending"
            )
        if pending.stage == "pending":
            data = self.store.get_bytes(pending.entry.model_key)
            if data is None or sha256_hex(data) != pending.entry.model_sha256:
                raise PromoteRefused(f"{pending.entry.model_key} is missing or not the file that was gated")

        def change(current: ProductionPointer | None) -> ProductionPointer:
            return approve(current, task.dataset, pending, decision, decision.at)

        pointer = self.registry.update(task.dataset, change)
        self.store.put_json(
            sign_off_key(task.dataset), close(record, task.version, task.execution, decision).to_dict()
        )
        return self._approved(pointer, task, decision)

    @staticmethod
    def _approved(pointer: ProductionPointer, task: SignOffTask, decision: Decision) -> dict[str, Any]:
        return {
            "signed_off": True,
            "version": task.version,
            "production_version": pointer.version,
            "by": decision.by,
            "at": decision.at,
        }

    def close(self, task: SignOffTask) -> dict[str, Any]:
        """A rejection or a timeout: production untouched, a candidate's trial ended, the decision kept."""
        outcome = str(task.details.get("outcome"))
        if outcome == "rejected":
            cause = (task.details.get("rejection") or {}).get("Cause")
            try:
                answer = json.loads(cause) if isinstance(cause, str) else None
            except ValueError:
                answer = None
            decision = Decision.from_dict(answer)
            if decision.outcome != "rejected":
                raise SignOffError(f"a rejection's answer says {decision.outcome}", "bad_sign_off_answer")
        elif outcome == "timed_out":
            at = self.now().isoformat()
            decision = Decision("timed_out", None, at, "nobody signed off before the wait ran out")
        else:
            raise SignOffError(f"close_sign_off ends a sign-off rejected or timed_out, not {outcome!r}")
        pointer = self.registry.pointer(task.dataset)
        if (
            pointer is not None
            and pointer.candidate is not None
            and pointer.candidate.version == task.version
        ):

            def change(current: ProductionPointer | None) -> ProductionPointer:
                ended = end_trial(current, task.version, decision)
                if ended is None:
                    raise RegistryError(f"production of '{task.dataset}' disappeared while ending a sign-off")
                return ended

            self.registry.update(task.dataset, change)
        record = self._record(task.dataset)
        self.store.put_json(
            sign_off_key(task.dataset), close(record, task.version, task.execution, decision).to_dict()
        )
        return {"outcome": decision.outcome, "version": task.version, "by": decision.by, "at": decision.at}
