"""Guarantee: production.json always points at a complete model version whose gate passed, and its
history is never lost. Each change applies exactly once, also when its write landed but its answer was
lost; two promotions racing: one wins, the other is recorded as superseded; a rollback racing a
promotion is applied once. On moto S3 (conditional writes), with real threads and the fault injector."""

from __future__ import annotations

import pytest

from harness.faults.injector import FaultInjector
from harness.faults.plan import FaultKind, FaultRule
from harness.faults.races import WriteRendezvous, run_threads
from medimage.core.errors import ChampionChanged
from medimage.services.promote import rollback_production
from tests.faults.conftest import DATASET, ModelLab

POINTER = "production.json"
LOST_ANSWER = FaultRule(
    service="s3", operation="PutObject", rate=1.0, kinds=(FaultKind.TIMEOUT_AFTER_WRITE,), limit=1
)


def every_version(pointer: dict) -> set[str]:
    """Every version production.json remembers: history, rolled back, superseded."""
    return (
        {e["version"] for e in pointer["history"]}
        | {r["version"] for r in pointer["rolled_back"]}
        | {s["version"] for s in pointer["superseded"]}
    )


def promoted_in_order(lab: ModelLab, *versions: str) -> None:
    champion = None
    for version in versions:
        lab.promoter().run(lab.trained(version, champion))
        champion = version


def test_a_rollback_whose_write_lands_but_whose_answer_is_lost_is_applied_once(lab):
    promoted_in_order(lab, "v1", "v2", "v3")
    with FaultInjector([LOST_ANSWER], seed=1) as injector:
        pointer = rollback_production(lab.store, lab.registry(), DATASET, None)
    assert [f.kind for f in injector.faults] == [FaultKind.TIMEOUT_AFTER_WRITE]
    stored = lab.pointer()
    assert pointer.version == stored["version"] == "v2"  # one step back, not two
    assert [r["version"] for r in stored["rolled_back"]] == ["v3"]
    assert [e["version"] for e in stored["history"]] == ["v2", "v1"]
    assert lab.production_problems() == []


def test_a_promotion_whose_write_lands_but_whose_answer_is_lost_is_applied_once(lab):
    promoted_in_order(lab, "v1")
    with FaultInjector([LOST_ANSWER], seed=1):
        result = lab.promoter().run(lab.trained("v2", "v1"))
    assert result["version"] == result["production_version"] == "v2"
    assert [e["version"] for e in lab.pointer()["history"]] == ["v2", "v1"]


def test_a_promote_task_retried_after_a_rollback_does_not_promote_again(lab):
    # GIVEN v3's Promote task whose swap landed but which Step Functions saw fail (answer lost, crash)
    promoted_in_order(lab, "v1", "v2", "v3")
    # WHEN production is rolled back meanwhile and then the task is retried
    rollback_production(lab.store, lab.registry(), DATASET, None)
    result = lab.promoter().run(lab.trained("v3", "v2"))
    # THEN the retry changes nothing: v3 stays withdrawn, v2 stays production
    pointer = lab.pointer()
    assert pointer["version"] == result["production_version"] == "v2"
    assert [e["version"] for e in pointer["history"]] == ["v2", "v1"]
    assert [r["version"] for r in pointer["rolled_back"]] == ["v3"]


@pytest.mark.parametrize("winner", ["a", "b"])
def test_two_promotions_racing_one_wins_and_the_other_is_recorded_as_superseded(lab, winner):
    # GIVEN two models gated against the same champion v1, whose Promote tasks read the pointer at once
    promoted_in_order(lab, "v1")
    requests = {"a": lab.trained("va", "v1"), "b": lab.trained("vb", "v1")}
    loser = "b" if winner == "a" else "a"
    with WriteRendezvous(POINTER, [winner, loser]):
        services = {name: lab.promoter() for name in requests}
        results = run_threads({name: lambda n=name: services[n].run(requests[n]) for name in requests})
    # THEN the first write wins; the other is refused (the state machine gates it again) and recorded
    assert results[winner]["version"] == f"v{winner}"
    assert isinstance(results[loser], ChampionChanged)
    pointer = lab.pointer()
    assert pointer["version"] == f"v{winner}"
    assert [e["version"] for e in pointer["history"]] == [f"v{winner}", "v1"]
    assert [(s["version"], s["by"]) for s in pointer["superseded"]] == [(f"v{loser}", f"v{winner}")]
    assert every_version(pointer) == {"v1", "va", "vb"}
    assert lab.production_problems() == []


@pytest.mark.parametrize("first", ["promotion", "rollback"])
def test_a_rollback_during_a_promotion_is_applied_once_and_loses_no_history(lab, first):
    # GIVEN production v2 (history v2, v1) and v3 gated against v2
    promoted_in_order(lab, "v1", "v2")
    request = lab.trained("v3", "v2")
    order = ["promotion", "rollback"] if first == "promotion" else ["rollback", "promotion"]
    with WriteRendezvous(POINTER, order):
        service, registry, store = lab.promoter(), lab.registry(), lab.store
        results = run_threads(
            {
                "promotion": lambda: service.run(request),
                "rollback": lambda: rollback_production(store, registry, DATASET, None),
            }
        )
    pointer = lab.pointer()
    if first == "promotion":
        # v3 landed, then the rollback (re-applied to the new pointer) withdrew it: one step back
        assert results["promotion"]["version"] == "v3"
        assert pointer["version"] == "v2" and [r["version"] for r in pointer["rolled_back"]] == ["v3"]
    else:
        # the rollback landed: v3's champion v2 is no longer production, so v3 is superseded by v1
        assert isinstance(results["promotion"], ChampionChanged)
        assert pointer["version"] == "v1" and [r["version"] for r in pointer["rolled_back"]] == ["v2"]
        assert [(s["version"], s["by"]) for s in pointer["superseded"]] == [("v3", "v1")]
    assert every_version(pointer) == {"v1", "v2", "v3"}
    assert lab.production_problems() == []
