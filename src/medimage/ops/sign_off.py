"""A person answers a pending sign-off (`medimage model approve|reject`): the CLI's side of
``core.sign_off``.

The pending request (``models/<dataset>/sign-off.json``) holds the task token of the waiting execution.
An answer names who gives it (``sts:GetCallerIdentity``'s ARN), when, the person's note and, for a
candidate on trial, the scorecard's figures at that moment (recomputed and written, as `medimage model
scorecard` does). Approve sends it with ``SendTaskSuccess``; reject with ``SendTaskFailure`` (error
``SignOffRejected``, the answer as the cause). The workflow applies it: the CLI changes no registry file.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from medimage.core.errors import MedimageError
from medimage.core.sign_off import REJECTED_ERROR, Decision, PendingSignOff, SignOffRecord, sign_off_key
from medimage.ops.trial import TrialBucket, compute_scorecard

# What Step Functions answers for a token whose task is no longer waiting.
_STALE = frozenset({"TaskTimedOut", "TaskDoesNotExist", "InvalidToken", "ExecutionDoesNotExist"})
# The scorecard figures a decision keeps (as `medimage model promote-candidate` does).
SCORECARD_FIGURES = ("pairs", "agreement", "review", "reviewed", "scorecard_key", "computed_at")


class SignOffProblem(MedimageError):
    code = "sign_off"


def pending_sign_off(store: TrialBucket, dataset: str) -> PendingSignOff:
    pending = SignOffRecord.from_dict(store.get_json(sign_off_key(dataset)), dataset).pending
    if pending is None:
        raise SignOffProblem(
            f"no model of dataset {dataset} is waiting for a sign-off ({sign_off_key(dataset)} has no "
            "pending request)",
            "no_sign_off_pending",
        )
    return pending


def answer_sign_off(
    store: TrialBucket,
    sfn: Any,
    sts: Any,
    dataset: str,
    approve: bool,
    note: str,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Answer the pending sign-off of ``dataset``; the decision sent (``{"version", "decision"}``)."""
    if not note or not note.strip():
        raise SignOffProblem(
            "a sign-off needs --note saying why (it is kept in the registry's history)",
            "sign_off_note_required",
        )
    pending = pending_sign_off(store, dataset)
    when = now or datetime.now(UTC)
    scorecard = None
    if pending.stage == "candidate":
        card = compute_scorecard(store, dataset, pending.version, when)
        scorecard = {k: card[k] for k in SCORECARD_FIGURES if k in card}
    by = str(sts.get_caller_identity()["Arn"])
    decision = Decision("approved" if approve else "rejected", by, when.isoformat(), note.strip(), scorecard)
    body = json.dumps(decision.to_dict())
    try:
        if approve:
            sfn.send_task_success(taskToken=pending.task_token, output=body)
        else:
            sfn.send_task_failure(taskToken=pending.task_token, error=REJECTED_ERROR, cause=body)
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code"))
        if code not in _STALE:
            raise
        raise SignOffProblem(
            f"the execution that waited for the sign-off of {pending.version} has ended ({code}: "
            f"{pending.execution}); nothing was changed. A new training run asks again.",
            "sign_off_stale",
        ) from None
    return {"version": pending.version, "execution": pending.execution, "decision": decision.to_dict()}
