"""Automatic rollback on an alarm (medimage.services.alarm_rollback), on in-memory fakes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from medimage.core.errors import BadEvent, PromoteRefused, RegistryError
from medimage.core.registry import ModelEntry, ProductionPointer, promote, sha256_hex
from medimage.services.alarm_rollback import AlarmEvent, AlarmRollback
from medimage.services.promote import rollback_production
from medimage.services.settings import RollbackSettings
from tests.fakes import InMemoryObjectStore, InMemoryPointerStore

DS = "chestxray2017"
ALARM = "medimage-InferenceReviewRateAlarm-1A2B3C"
PROMOTED = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
SETTINGS = RollbackSettings(data_bucket="b", alarms=frozenset({ALARM}), watch_minutes=60, default_dataset=DS)


def model_key(version: str) -> str:
    return f"models/{DS}/{version}/model.tflite"


class World:
    def __init__(self, *versions: str, settings: RollbackSettings = SETTINGS) -> None:
        self.store = InMemoryObjectStore()
        self.registry = InMemoryPointerStore()
        pointer: ProductionPointer | None = None
        for i, version in enumerate(versions):
            data = f"model {version}".encode()
            self.store.objects[model_key(version)] = data
            when = PROMOTED - timedelta(days=len(versions) - 1 - i)
            entry = ModelEntry(version, model_key(version), sha256_hex(data), when.isoformat(), {})
            pointer = promote(pointer, DS, entry, None if pointer is None else pointer.version)
        if pointer is not None:
            self.registry.put(DS, pointer)
        self.now = PROMOTED + timedelta(minutes=30)
        self.service = AlarmRollback(self.store, self.registry, settings, now=lambda: self.now)

    @property
    def pointer(self) -> ProductionPointer:
        pointer = self.registry.pointer(DS)
        assert pointer is not None
        return pointer


def alarm_event(
    after: timedelta = timedelta(minutes=20),
    name: str = ALARM,
    state: str = "ALARM",
    datasets: tuple[str, ...] = (DS,),
) -> dict[str, Any]:
    """A CloudWatch Alarm State Change event as EventBridge delivers it (a metric math alarm)."""
    changed = PROMOTED + after
    metrics: list[dict[str, Any]] = [
        {
            "id": f"m{i}",
            "metricStat": {
                "metric": {
                    "namespace": "medimage",
                    "name": "NeedsReview",
                    "dimensions": {"dataset": ds, "service": "inference"},
                },
                "period": 3600,
                "stat": "Sum",
            },
            "returnData": False,
        }
        for i, ds in enumerate(datasets)
    ]
    metrics.append({"id": "rate", "expression": "review / predictions", "returnData": True})
    return {
        "version": "0",
        "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
        "detail-type": "CloudWatch Alarm State Change",
        "source": "aws.cloudwatch",
        "account": "123456789012",
        "time": changed.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": "us-east-1",
        "resources": [f"arn:aws:cloudwatch:us-east-1:123456789012:alarm:{name}"],
        "detail": {
            "alarmName": name,
            "state": {
                "value": state,
                "reason": "Threshold Crossed",
                "timestamp": changed.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0000",
            },
            "previousState": {"value": "OK", "reason": "", "timestamp": PROMOTED.isoformat()},
            "configuration": {"description": "review rate", "metrics": metrics},
        },
    }


def handle(world: World, event: dict[str, Any]) -> Any:
    return world.service.handle(AlarmEvent.from_event(event))


def test_an_alarm_within_the_window_rolls_back_and_the_history_names_the_alarm():
    world = World("v1", "v2")
    outcome = handle(world, alarm_event())
    assert outcome.rolled_back and outcome.code == "rolled_back"
    assert (outcome.dataset, outcome.version, outcome.withdrawn) == (DS, "v1", "v2")
    pointer = world.pointer
    assert pointer.version == "v1"
    assert pointer.current.action == f"rollback from v2 on alarm {ALARM}"
    assert pointer.current.promoted_at == world.now.isoformat()
    assert pointer.rolled_back[0]["version"] == "v2"
    assert pointer.rolled_back[0]["reason"] == f"alarm {ALARM}"


def test_an_alarm_after_the_window_changes_nothing():
    world = World("v1", "v2")
    outcome = handle(world, alarm_event(after=timedelta(minutes=61)))
    assert not outcome.rolled_back and outcome.code == "outside_watch_window"
    assert "60 minutes" in outcome.message
    assert world.pointer.version == "v2" and world.pointer.rolled_back == ()


def test_an_alarm_from_before_the_promotion_changes_nothing():
    world = World("v1", "v2")
    outcome = handle(world, alarm_event(after=timedelta(minutes=-5)))
    assert outcome.code == "alarm_before_promotion" and world.pointer.version == "v2"


def test_with_a_single_version_there_is_nothing_to_roll_back_to():
    world = World("v1")
    outcome = handle(world, alarm_event())
    assert outcome.code == "nothing_to_roll_back_to" and "only version" in outcome.message
    assert world.pointer.version == "v1"


def test_without_production_there_is_nothing_to_roll_back():
    world = World()
    outcome = handle(world, alarm_event())
    assert outcome.code == "no_production" and world.registry.pointer(DS) is None


def test_the_same_event_twice_rolls_back_once():
    world = World("v1", "v2", "v3")
    event = alarm_event()
    first, second = handle(world, event), handle(world, event)
    assert first.rolled_back and first.version == "v2"
    assert not second.rolled_back and second.code == "already_rolled_back"
    assert world.pointer.version == "v2" and [w["version"] for w in world.pointer.rolled_back] == ["v3"]


def test_a_later_alarm_after_a_rollback_does_not_go_further_back():
    world = World("v1", "v2", "v3")
    handle(world, alarm_event(after=timedelta(minutes=10)))
    again = handle(world, alarm_event(after=timedelta(minutes=40)))
    assert again.code == "already_rolled_back" and world.pointer.version == "v2"


def test_an_alarm_the_function_does_not_watch_is_ignored():
    world = World("v1", "v2")
    outcome = handle(world, alarm_event(name="someone-elses-alarm"))
    assert outcome.code == "unknown_alarm" and ALARM in outcome.message
    assert world.pointer.version == "v2"


def test_a_state_other_than_alarm_is_ignored():
    world = World("v1", "v2")
    assert handle(world, alarm_event(state="OK")).code == "not_alarm"
    assert world.pointer.version == "v2"


def test_a_watch_window_of_zero_turns_it_off():
    off = RollbackSettings(data_bucket="b", alarms=frozenset({ALARM}), watch_minutes=0, default_dataset=DS)
    world = World("v1", "v2", settings=off)
    assert handle(world, alarm_event()).code == "watch_off" and world.pointer.version == "v2"


def test_an_alarm_without_a_dataset_dimension_rolls_back_the_default_dataset():
    world = World("v1", "v2")
    outcome = handle(world, alarm_event(datasets=()))
    assert outcome.rolled_back and outcome.dataset == DS and world.pointer.version == "v1"


def test_an_alarm_over_several_datasets_is_refused():
    world = World("v1", "v2")
    with pytest.raises(BadEvent, match="several datasets") as info:
        handle(world, alarm_event(datasets=(DS, "oct2017")))
    assert info.value.code == "bad_alarm_event" and world.pointer.version == "v2"


def test_a_missing_model_file_refuses_the_rollback():
    world = World("v1", "v2")
    del world.store.objects[model_key("v1")]
    with pytest.raises(PromoteRefused, match="missing"):
        handle(world, alarm_event())
    assert world.pointer.version == "v2"


def test_the_check_sees_the_pointer_a_concurrent_rollback_left():
    """A manual rollback lands between the service's read and its write: the re-applied check refuses."""
    world = World("v1", "v2", "v3")
    world.registry.interleave = lambda: rollback_production(world.store, world.registry, DS, None)
    outcome = handle(world, alarm_event())
    assert outcome.code == "already_rolled_back"
    assert world.pointer.version == "v2" and world.registry.lost_races == 1


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ({"source": "aws.s3", "detail-type": "Object Created", "detail": {}}, "CloudWatch Alarm State"),
        ({"source": "aws.cloudwatch", "detail-type": "CloudWatch Alarm State Change"}, "alarmName"),
        (
            {
                "source": "aws.cloudwatch",
                "detail-type": "CloudWatch Alarm State Change",
                "detail": {"alarmName": ALARM, "state": {"value": "ALARM", "timestamp": "yesterday"}},
            },
            "not a timestamp",
        ),
        ("not an object", "JSON object"),
    ],
)
def test_an_event_that_is_not_an_alarm_state_change_is_refused_with_a_code(event, message):
    with pytest.raises(BadEvent, match=message) as info:
        AlarmEvent.from_event(event)
    assert info.value.code == "bad_alarm_event"


def test_settings_read_the_template_environment():
    settings = RollbackSettings.from_env(
        {
            "DATA_BUCKET": "bucket",
            "ROLLBACK_ALARMS": f"{ALARM}, other",
            "ROLLBACK_WATCH_MINUTES": "45",
            "DEFAULT_DATASET": DS,
        }
    )
    assert settings.alarms == frozenset({ALARM, "other"}) and settings.watch_minutes == 45
    with pytest.raises(ValueError, match="whole number"):
        RollbackSettings.from_env({"ROLLBACK_WATCH_MINUTES": "-1"})


def test_a_pointer_whose_promotion_time_is_not_a_time_is_an_error_not_a_rollback():
    world = World("v1")
    entry = ModelEntry("v2", model_key("v1"), world.pointer.current.model_sha256, "yesterday", {})
    world.registry.put(DS, promote(world.pointer, DS, entry, "v1"))
    with pytest.raises(RegistryError, match="not a time"):
        handle(world, alarm_event())
    assert world.pointer.version == "v2"
