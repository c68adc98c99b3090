"""A person's sign-off: the rules (core.sign_off) and the workflow's tasks (services.sign_off) on fakes."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from medimage.core import layout
from medimage.core.errors import ChampionChanged, PromoteRefused
from medimage.core.registry import ModelEntry, ProductionPointer, nominate, promote, sha256_hex
from medimage.core.sign_off import (
    Decision,
    PendingSignOff,
    SignOffError,
    SignOffRecord,
    approve,
    close,
    end_trial,
    sign_off_key,
    timeout_seconds,
)
from medimage.services.sign_off import SignOffService, SignOffTask
from tests.fakes import InMemoryObjectStore, InMemoryPointerStore

DS = "ds"
NOW = datetime(2026, 12, 7, 1, 0, tzinfo=UTC)
APPROVER = "arn:aws:sts::123456789012:assumed-role/clinical-lead/alice"


def entry(version: str, data: bytes | None = None) -> ModelEntry:
    return ModelEntry(
        version,
        f"models/{DS}/{version}/model.tflite",
        sha256_hex(data if data is not None else version.encode()),
        "2026-12-01T00:00:00+00:00",
        {"accuracy": 0.9},
    )


def pending(version: str, stage: str, champion: str | None, execution: str = "exec-1") -> PendingSignOff:
    return PendingSignOff(
        version=version,
        stage=stage,
        entry=entry(version),
        champion=champion,
        task_token="secret-token",
        execution=execution,
        requested_at="2026-12-07T00:00:00+00:00",
        expires_at="2026-12-10T00:00:00+00:00",
        gate={"outcome": "pass"},
    )


def decision(outcome: str = "approved", note: str = "looks right", scorecard: Any = None) -> Decision:
    by = None if outcome == "timed_out" else APPROVER
    return Decision(outcome, by, "2026-12-07T01:00:00+00:00", note, scorecard)


def production(*versions: str) -> ProductionPointer:
    pointer = None
    for v in versions:
        pointer = promote(pointer, DS, entry(v), None if pointer is None else pointer.version)
    assert pointer is not None
    return pointer


# ---------------------------------------------------------------- rules


@pytest.mark.parametrize(("hours", "seconds"), [("72", 259200), ("0.001", 4), (1, 3600), ("8760", 31536000)])
def test_the_timeout_in_hours_becomes_whole_seconds(hours, seconds):
    assert timeout_seconds(hours) == seconds


@pytest.mark.parametrize("hours", ["", "soon", "0", "-1", "8761", "nan"])
def test_a_timeout_that_is_no_positive_number_of_hours_within_a_year_is_refused(hours):
    with pytest.raises(SignOffError) as caught:
        timeout_seconds(hours)
    assert caught.value.code == "bad_sign_off_timeout"


def test_an_answer_without_a_note_or_without_who_gave_it_is_refused():
    with pytest.raises(SignOffError) as caught:
        decision(note="  ")
    assert caught.value.code == "sign_off_note_required"
    with pytest.raises(SignOffError) as caught:
        Decision("rejected", None, "2026-12-07T01:00:00+00:00", "no")
    assert caught.value.code == "bad_sign_off_answer"
    with pytest.raises(SignOffError):
        Decision.from_dict({"outcome": "maybe", "by": APPROVER, "at": "t", "note": "n"})
    assert decision("timed_out", note="").by is None  # nobody answered: no one to name


def test_approving_a_model_without_production_makes_it_production_with_the_decision_in_its_entry():
    answer = decision()
    pointer = approve(None, DS, pending("v1", "pending", None), answer, answer.at)
    assert pointer.version == "v1"
    head = pointer.to_dict()["history"][0]
    assert head["action"] == "promote after sign-off" and head["promoted_at"] == answer.at
    assert head["sign_off"] == {
        "outcome": "approved",
        "by": APPROVER,
        "at": answer.at,
        "note": "looks right",
        "scorecard": None,
    }
    assert ProductionPointer.from_dict(pointer.to_dict()) == pointer
    # A retried task changes nothing.
    assert approve(pointer, DS, pending("v1", "pending", None), answer, "later") is pointer


def test_approving_a_candidate_promotes_it_and_keeps_the_scorecard_in_the_history_and_the_trial():
    current = nominate(production("v1"), entry("v2"), "v1", "2026-12-06T00:00:00+00:00")
    card = {"pairs": 40, "agreement": {"rate": 0.95}}
    pointer = approve(current, DS, pending("v2", "candidate", "v1"), decision(scorecard=card), "now")
    assert pointer.version == "v2" and pointer.candidate is None
    assert [e.version for e in pointer.history] == ["v2", "v1"]
    assert pointer.current.sign_off is not None and pointer.current.sign_off["scorecard"] == card
    assert pointer.trials[0]["outcome"] == "promoted" and pointer.trials[0]["scorecard"] == card
    assert pointer.trials[0]["sign_off"]["by"] == APPROVER


def test_approval_after_production_moved_on_is_refused_as_champion_changed():
    with pytest.raises(ChampionChanged):
        approve(production("v1", "v3"), DS, pending("v2", "pending", "v1"), decision(), "now")
    moved = nominate(production("v1"), entry("v2"), "v1", "t")
    moved = ProductionPointer.from_dict(
        {**moved.to_dict(), "version": "v3", "history": [entry("v3").to_dict(), entry("v1").to_dict()]}
    )
    with pytest.raises(ChampionChanged):
        approve(moved, DS, pending("v2", "candidate", "v1"), decision(), "now")


@pytest.mark.parametrize("outcome", ["rejected", "timed_out"])
def test_a_rejection_or_timeout_leaves_production_and_ends_the_candidates_trial(outcome):
    current = nominate(production("v1"), entry("v2"), "v1", "2026-12-06T00:00:00+00:00")
    answer = decision(outcome, note="not yet" if outcome == "rejected" else "")
    ended = end_trial(current, "v2", answer)
    assert ended is not None and ended.version == "v1" and ended.history == current.history
    assert ended.candidate is None
    trial = ended.trials[0]
    assert trial["version"] == "v2" and trial["outcome"] == outcome and trial["ended_at"] == answer.at
    assert trial["sign_off"]["note"] == answer.note
    # Not the candidate (replaced meanwhile), or no production: nothing to end.
    assert end_trial(current, "v9", answer) is current
    assert end_trial(None, "v2", answer) is None
    with pytest.raises(SignOffError):
        end_trial(current, "v2", decision())


def test_the_record_keeps_one_pending_request_and_every_decision_newest_first():
    record = SignOffRecord(DS, pending("v1", "pending", None, "exec-1"))
    closed = close(record, "v1", "exec-1", decision())
    assert closed.pending is None and closed.decided[0]["version"] == "v1"
    assert closed.decided[0]["outcome"] == "approved" and "task_token" not in json.dumps(closed.decided)
    assert close(closed, "v1", "exec-1", decision()) == closed  # once
    # A newer request stays pending when an older execution closes.
    newer = SignOffRecord(DS, pending("v2", "pending", None, "exec-2"), closed.decided)
    after = close(newer, "v1", "exec-0", decision("timed_out", note=""))
    assert after.pending == newer.pending and after.decided[0]["outcome"] == "timed_out"
    assert SignOffRecord.from_dict(after.to_dict(), DS) == after
    assert "task_token" not in newer.pending.public()


# ---------------------------------------------------------------- the workflow's tasks, on fakes


class RecordingNotifier:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    def publish(self, subject: str, message: str) -> None:
        self.sent.append((subject, message))


def gate_record(version: str) -> dict[str, Any]:
    return {
        "passed": True,
        "outcome": "pass",
        "metrics": {"accuracy": 0.93, "n": 200, "per_class": {"a": {}}},
        "champion": {"version": "v1"},
        "reasons": ["accuracy 0.9300 >= min_accuracy 0.9000"],
    }


def service(store: InMemoryObjectStore, registry: InMemoryPointerStore) -> tuple[SignOffService, Any]:
    notifier = RecordingNotifier()
    return SignOffService(store, registry, notifier, now=lambda: NOW), notifier


def task(version: str, **details: Any) -> SignOffTask:
    event = {"dataset": DS, "bucket": "b", "version": version, "execution": "exec-1", **details}
    return SignOffTask.from_event(event)


def staged(version: str, stage: str, data: bytes) -> dict[str, Any]:
    return {
        "version": version,
        "stage": stage,
        "model_key": f"models/{DS}/{version}/model.tflite",
        "model_sha256": sha256_hex(data),
        "previous_version": "v1",
    }


def stage_v2(store: InMemoryObjectStore, stage: str) -> dict[str, Any]:
    store.put_json(layout.model_prefix(DS, "v2") + "gate.json", gate_record("v2"))
    store.put_bytes(f"models/{DS}/v2/model.tflite", b"v2 bytes")
    return staged("v2", stage, b"v2 bytes")


def test_the_request_keeps_the_token_in_the_record_and_publishes_the_numbers_without_it():
    store, registry = InMemoryObjectStore(), InMemoryPointerStore()
    registry.put(DS, production("v1"))
    svc, notifier = service(store, registry)
    answer = svc.request(task("v2", staged=stage_v2(store, "pending"), task_token="tok", timeout_seconds=60))
    record = store.get_json(sign_off_key(DS))
    assert record["pending"]["task_token"] == "tok"
    assert record["pending"]["expires_at"] == "2026-12-07T01:01:00+00:00"
    assert record["pending"]["gate"]["metrics"] == {"accuracy": 0.93, "n": 200}
    ((subject, message),) = notifier.sent
    assert subject == "medimage ds: v2 awaits sign-off"
    published = json.loads(message)
    assert published["version"] == "v2" and published["gate"]["metrics"]["accuracy"] == 0.93
    assert "tok" not in message and "tok" not in json.dumps(answer)
    assert published["scorecard_key"] is None  # no trial: nothing to score


def test_a_request_for_a_model_without_a_passed_gate_is_refused():
    store, registry = InMemoryObjectStore(), InMemoryPointerStore()
    svc, notifier = service(store, registry)
    stage = staged("v2", "pending", b"x")
    with pytest.raises(PromoteRefused):
        svc.request(task("v2", staged=stage, task_token="tok", timeout_seconds=60))
    assert notifier.sent == [] and store.get_json(sign_off_key(DS)) is None


def test_an_approval_promotes_after_checking_the_file_and_a_second_one_changes_nothing():
    store, registry = InMemoryObjectStore(), InMemoryPointerStore()
    registry.put(DS, production("v1"))
    svc, _ = service(store, registry)
    svc.request(task("v2", staged=stage_v2(store, "pending"), task_token="tok", timeout_seconds=60))
    approval = decision().to_dict()
    result = svc.approve(task("v2", approval=approval))
    assert result["production_version"] == "v2" and result["by"] == APPROVER
    pointer = registry.pointer(DS)
    assert pointer is not None and pointer.current.sign_off == approval
    record = store.get_json(sign_off_key(DS))
    assert record["pending"] is None and record["decided"][0]["outcome"] == "approved"
    assert svc.approve(task("v2", approval=approval))["production_version"] == "v2"  # a retried task
    with pytest.raises(SignOffError) as caught:
        svc.approve(task("v3", approval=approval))
    assert caught.value.code == "no_sign_off_pending"


def test_an_approval_of_a_model_file_that_changed_since_the_gate_is_refused():
    store, registry = InMemoryObjectStore(), InMemoryPointerStore()
    registry.put(DS, production("v1"))
    svc, _ = service(store, registry)
    svc.request(task("v2", staged=stage_v2(store, "pending"), task_token="tok", timeout_seconds=60))
    store.put_bytes(f"models/{DS}/v2/model.tflite", b"other bytes")
    with pytest.raises(PromoteRefused):
        svc.approve(task("v2", approval=decision().to_dict()))
    assert registry.pointer(DS) == production("v1")


def test_a_rejection_ends_the_candidates_trial_and_a_bad_cause_is_refused():
    store, registry = InMemoryObjectStore(), InMemoryPointerStore()
    registry.put(DS, nominate(production("v1"), entry("v2", b"v2 bytes"), "v1", "t"))
    svc, _ = service(store, registry)
    svc.request(task("v2", staged=stage_v2(store, "candidate"), task_token="tok", timeout_seconds=60))
    with pytest.raises(SignOffError) as caught:
        svc.close(task("v2", outcome="rejected", rejection={"Error": "SignOffRejected", "Cause": "junk"}))
    assert caught.value.code == "bad_sign_off_answer"
    cause = json.dumps(decision("rejected", note="viral recall fell").to_dict())
    result = svc.close(task("v2", outcome="rejected", rejection={"Error": "SignOffRejected", "Cause": cause}))
    assert result["outcome"] == "rejected"
    pointer = registry.pointer(DS)
    assert pointer is not None and pointer.version == "v1" and pointer.candidate is None
    assert pointer.trials[0]["outcome"] == "rejected"
    assert pointer.trials[0]["sign_off"]["note"] == "viral recall fell"
    record = store.get_json(sign_off_key(DS))
    assert record["pending"] is None and record["decided"][0]["note"] == "viral recall fell"


def test_a_timeout_records_that_nobody_answered():
    store, registry = InMemoryObjectStore(), InMemoryPointerStore()
    svc, _ = service(store, registry)
    svc.request(task("v2", staged=stage_v2(store, "pending"), task_token="tok", timeout_seconds=60))
    result = svc.close(task("v2", outcome="timed_out"))
    assert result == {"outcome": "timed_out", "version": "v2", "by": None, "at": NOW.isoformat()}
    assert registry.pointer(DS) is None
    with pytest.raises(SignOffError):
        svc.close(task("v2", outcome="approved"))
