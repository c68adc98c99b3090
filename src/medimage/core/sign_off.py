"""A person's sign-off on a model that passed the gate (the template's ``ApprovalRequired``): the rules.

With sign-off required, the training workflow stages a model that passed the gate (the dataset's
candidate on silent trial where a trial is configured and production exists, else published but not
served) and waits for a person. The waiting task keeps a **pending** request in
``models/<dataset>/sign-off.json`` (the task token is there, and only there: never in production.json,
which serving reads, nor in a notification or a log). A person answers with `medimage model
approve|reject`; the workflow then applies the **decision**:

- approved: the model becomes production (``promote_candidate`` for a candidate, ``promote`` otherwise);
  its history entry keeps the decision (who, when, the note, the scorecard of that moment);
- rejected or timed out: production is untouched; a candidate's trial ends as ``rejected`` or
  ``timed_out`` (in ``trials``, with the decision).

Every decision is also kept in the sign-off record's ``decided`` list, newest first. A newer request for
the same dataset replaces the pending one: the older execution is left to time out. Pure: the promote
function and the CLI do the reading and writing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from medimage.core.errors import MedimageError
from medimage.core.registry import MAX_HISTORY, ModelEntry, ProductionPointer, promote, promote_candidate

OUTCOMES = ("approved", "rejected", "timed_out")
STAGES = ("candidate", "pending")
MAX_DECIDED = 100
# A Standard execution lives at most a year: a longer wait would outlive the execution that waits.
MAX_TIMEOUT_HOURS = 8760.0
# The error a rejection is sent with (SendTaskFailure): the state machine's Catch matches it.
REJECTED_ERROR = "SignOffRejected"


class SignOffError(MedimageError):
    """A sign-off request or answer the rules refuse."""

    code = "sign_off"


def sign_off_key(dataset: str) -> str:
    return f"models/{dataset}/sign-off.json"


def timeout_seconds(hours: Any) -> int:
    """The wait's ``TimeoutSeconds`` for the template's ``ApprovalTimeoutHours`` (fractions allowed)."""
    try:
        value = float(str(hours).strip())
    except ValueError:
        raise SignOffError(
            f"ApprovalTimeoutHours {hours!r} is not a number of hours", "bad_sign_off_timeout"
        ) from None
    if not (0 < value <= MAX_TIMEOUT_HOURS) or math.isnan(value):
        raise SignOffError(
            f"ApprovalTimeoutHours {hours!r} is not within (0, {MAX_TIMEOUT_HOURS:g}] hours",
            "bad_sign_off_timeout",
        )
    return max(1, math.ceil(value * 3600))


@dataclass(frozen=True)
class Decision:
    """What became of a sign-off request: ``by`` (the caller's ARN; None for a timeout), ``at``, the
    person's ``note`` and the trial's scorecard figures at that moment (None without a trial)."""

    outcome: str
    by: str | None
    at: str
    note: str
    scorecard: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise SignOffError(f"a sign-off decision is one of {', '.join(OUTCOMES)}, not {self.outcome!r}")
        if self.outcome != "timed_out":
            if not self.note.strip():
                raise SignOffError("a sign-off needs a note saying why", "sign_off_note_required")
            if not self.by:
                raise SignOffError("a sign-off names who gave it", "bad_sign_off_answer")

    def to_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "by": self.by,
            "at": self.at,
            "note": self.note,
            "scorecard": self.scorecard,
        }

    @classmethod
    def from_dict(cls, data: Any) -> Decision:
        if not isinstance(data, dict):
            raise SignOffError("a sign-off answer is not a JSON object", "bad_sign_off_answer")
        scorecard = data.get("scorecard")
        try:
            return cls(
                outcome=str(data["outcome"]),
                by=None if data.get("by") is None else str(data["by"]),
                at=str(data["at"]),
                note=str(data.get("note") or ""),
                scorecard=dict(scorecard) if isinstance(scorecard, dict) else None,
            )
        except KeyError as exc:
            raise SignOffError(f"a sign-off answer lacks {exc}", "bad_sign_off_answer") from None


@dataclass(frozen=True)
class PendingSignOff:
    """A model waiting for a person: ``stage`` is ``candidate`` (on silent trial beside production) or
    ``pending`` (published, not served); ``entry`` is what production would record; ``champion`` the
    production version its gate compared against."""

    version: str
    stage: str
    entry: ModelEntry
    champion: str | None
    task_token: str
    execution: str
    requested_at: str
    expires_at: str
    gate: dict[str, Any]
    scorecard_key: str | None = None

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise SignOffError(
                f"a sign-off request's stage is one of {', '.join(STAGES)}, not {self.stage!r}"
            )
        if not self.task_token:
            raise SignOffError("a sign-off request has no task token", "bad_sign_off_request")

    def public(self) -> dict[str, Any]:
        """What may be shown or published: everything but the task token."""
        return {
            "version": self.version,
            "stage": self.stage,
            "champion": self.champion,
            "execution": self.execution,
            "requested_at": self.requested_at,
            "expires_at": self.expires_at,
            "gate": self.gate,
            "scorecard_key": self.scorecard_key,
        }

    def to_dict(self) -> dict[str, Any]:
        return {**self.public(), "entry": self.entry.to_dict(), "task_token": self.task_token}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PendingSignOff:
        try:
            return cls(
                version=str(data["version"]),
                stage=str(data["stage"]),
                entry=ModelEntry.from_dict(data["entry"]),
                champion=None if data.get("champion") is None else str(data["champion"]),
                task_token=str(data["task_token"]),
                execution=str(data["execution"]),
                requested_at=str(data["requested_at"]),
                expires_at=str(data["expires_at"]),
                gate=dict(data.get("gate") or {}),
                scorecard_key=None if data.get("scorecard_key") is None else str(data["scorecard_key"]),
            )
        except (KeyError, TypeError) as exc:
            raise SignOffError(f"the pending sign-off lacks {exc}", "bad_sign_off_request") from None


@dataclass(frozen=True)
class SignOffRecord:
    """``models/<dataset>/sign-off.json``: the pending request (if any) and the decisions, newest first."""

    dataset: str
    pending: PendingSignOff | None = None
    decided: tuple[dict[str, Any], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "pending": None if self.pending is None else self.pending.to_dict(),
            "decided": list(self.decided),
        }

    @classmethod
    def from_dict(cls, data: Any, dataset: str) -> SignOffRecord:
        if data is None:
            return cls(dataset)
        if not isinstance(data, dict):
            raise SignOffError(f"{sign_off_key(dataset)} is not a JSON object", "bad_sign_off_request")
        pending = data.get("pending")
        return cls(
            dataset,
            PendingSignOff.from_dict(pending) if isinstance(pending, dict) else None,
            tuple(d for d in data.get("decided") or [] if isinstance(d, dict)),
        )

    def decision_of(self, version: str, execution: str) -> dict[str, Any] | None:
        return next(
            (d for d in self.decided if d.get("version") == version and d.get("execution") == execution),
            None,
        )


def request(record: SignOffRecord, pending: PendingSignOff) -> SignOffRecord:
    """The record with ``pending`` waiting (replacing an older request, whose execution times out)."""
    return replace(record, pending=pending)


def close(record: SignOffRecord, version: str, execution: str, decision: Decision) -> SignOffRecord:
    """The record with this execution's request decided: no longer pending, its decision kept (once)."""
    pending = record.pending
    if pending is not None and pending.version == version and pending.execution == execution:
        pending = None
    if record.decision_of(version, execution) is not None:
        return replace(record, pending=pending)
    decided = {"version": version, "execution": execution, **decision.to_dict()}
    return replace(record, pending=pending, decided=(decided, *record.decided)[:MAX_DECIDED])


def approve(
    current: ProductionPointer | None, dataset: str, pending: PendingSignOff, decision: Decision, now: str
) -> ProductionPointer:
    """Production after an approval: the model becomes production, its entry keeping the decision.

    A version that is or was production changes nothing (a retried task). ChampionChanged where
    production moved on since the gate compared against it."""
    if decision.outcome != "approved":
        raise SignOffError(f"only an approval promotes, not {decision.outcome}")
    version = pending.version
    if current is not None and current.ever_promoted(version):
        return current
    signed = decision.to_dict()
    if pending.stage == "candidate":
        pointer = promote_candidate(current, now, version, decision.scorecard)
        head = replace(pointer.current, action="promote after sign-off", sign_off=signed)
        ended = {**pointer.trials[0], "sign_off": signed}
        return replace(pointer, history=(head, *pointer.history[1:]), trials=(ended, *pointer.trials[1:]))
    entry = replace(pending.entry, promoted_at=now, action="promote after sign-off", sign_off=signed)
    return promote(current, dataset, entry, pending.champion)


def end_trial(
    current: ProductionPointer | None, version: str, decision: Decision
) -> ProductionPointer | None:
    """Production after a rejection or a timeout: unchanged; a candidate ``version`` still on trial ends
    its trial as ``rejected`` or ``timed_out``, with the decision."""
    if decision.outcome == "approved":
        raise SignOffError("an approval does not end a trial without promoting")
    if current is None or current.candidate is None or current.candidate.version != version:
        return current
    candidate = current.candidate
    ended = {
        "version": version,
        "champion": candidate.champion,
        "outcome": decision.outcome,
        "started_at": candidate.entry.promoted_at,
        "ended_at": decision.at,
        "scorecard": decision.scorecard,
        "sign_off": decision.to_dict(),
    }
    return replace(current, candidate=None, trials=(ended, *current.trials)[:MAX_HISTORY])
