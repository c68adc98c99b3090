"""Automatic rollback on an alarm: production goes back to the previous model when an inference alarm fires
soon after a promotion.

An EventBridge rule (``template.yaml``, RollbackFunction's ``InferenceAlarm`` event) delivers the
``CloudWatch Alarm State Change`` events of the watched alarms (InferenceReviewRateAlarm) when they go to
ALARM. For each one:

- the dataset is the ``dataset`` dimension of the alarm's metrics (the review-rate alarm carries the
  default dataset's), else the function's default dataset;
- production is rolled back (``services.promote.rollback_production``, which checks the older model's file
  is still there) only when its current entry is a promotion, not a rollback, that happened before the
  alarm changed state and at most ``RollbackWatchMinutes`` before it, and an older version is in the
  history. The restored entry's action records the alarm (``rollback from V on alarm NAME``) and its time.
- otherwise nothing changes and the outcome says why (a stable code and a message, logged by the handler).

The check runs inside the conditional write of ``production.json``, against the very pointer the swap
replaces. An event delivered twice (EventBridge is at-least-once) finds production already a rollback and
changes nothing, and so does a second alarm after a rollback: going further back is a person's decision
(``medimage model rollback``).

Its own function rather than a path of the promote function: promote is a Step Functions task that may
write every key under ``models/``; this one is invoked asynchronously by EventBridge and may only swap
``production.json`` and read the model it swaps back to. Keeping them apart keeps each role that small,
and lets the rule's failures go to their own dead-letter queue without touching the workflow's retries.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from medimage.core import layout
from medimage.core.errors import BadEvent, MedimageError, RegistryError
from medimage.core.registry import ProductionPointer
from medimage.services.ports import ObjectStore, PointerStore
from medimage.services.promote import rollback_production
from medimage.services.settings import RollbackSettings

ALARM_SOURCE = "aws.cloudwatch"
ALARM_STATE_CHANGE = "CloudWatch Alarm State Change"
ALARM = "ALARM"
DATASET_DIMENSION = "dataset"


class NoRollback(MedimageError):
    """Production stays as it is; ``code`` says why."""

    code = "no_rollback"


def _bad(message: str) -> BadEvent:
    return BadEvent(message, "bad_alarm_event")


def _timestamp(text: Any) -> datetime:
    """CloudWatch's ``2026-12-07T10:04:40.985+0000`` or EventBridge's ``2026-12-07T10:04:40Z``, as UTC."""
    try:
        parsed = datetime.fromisoformat(str(text))
    except ValueError:
        raise _bad(f"{text!r} is not a timestamp") from None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)


def _datasets(configuration: Any) -> tuple[str, ...]:
    """The values of the ``dataset`` dimension of the alarm's metrics (metric math alarms list several)."""
    found: list[str] = []
    if not isinstance(configuration, Mapping):
        return ()
    for metric in configuration.get("metrics") or []:
        stat = metric.get("metricStat") if isinstance(metric, Mapping) else None
        dims = ((stat or {}).get("metric") or {}).get("dimensions") if isinstance(stat, Mapping) else None
        value = dims.get(DATASET_DIMENSION) if isinstance(dims, Mapping) else None
        if isinstance(value, str) and value not in found:
            found.append(value)
    return tuple(found)


@dataclass(frozen=True)
class AlarmEvent:
    """What a ``CloudWatch Alarm State Change`` event says: which alarm, its new state and when."""

    name: str
    state: str
    changed_at: datetime
    datasets: tuple[str, ...] = ()

    @classmethod
    def from_event(cls, event: Any) -> AlarmEvent:
        if not isinstance(event, Mapping):
            raise _bad("the event is not a JSON object")
        if event.get("source") != ALARM_SOURCE or event.get("detail-type") != ALARM_STATE_CHANGE:
            raise _bad(
                f"expected a '{ALARM_STATE_CHANGE}' event from {ALARM_SOURCE}, got "
                f"'{event.get('detail-type')}' from {event.get('source')}"
            )
        detail = event.get("detail")
        if not isinstance(detail, Mapping) or not isinstance(detail.get("alarmName"), str):
            raise _bad("the event's detail names no alarm (detail.alarmName)")
        state = detail.get("state")
        if not isinstance(state, Mapping) or not isinstance(state.get("value"), str):
            raise _bad("the event's detail has no new state (detail.state.value)")
        changed = state.get("timestamp") or event.get("time")
        if not changed:
            raise _bad("the event says not when the alarm changed state (detail.state.timestamp, time)")
        return cls(
            name=detail["alarmName"],
            state=state["value"],
            changed_at=_timestamp(changed),
            datasets=_datasets(detail.get("configuration")),
        )


@dataclass(frozen=True)
class AlarmOutcome:
    """What an alarm event did: ``rolled_back``, or why not (``code``, ``message``)."""

    rolled_back: bool
    code: str
    message: str
    alarm: str
    dataset: str | None = None
    version: str | None = None  # production afterwards
    withdrawn: str | None = None  # the version the rollback took out of production

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def rollback_reason(alarm: str) -> str:
    """What the history records of an automatic rollback (``rollback from V on alarm NAME``)."""
    return f"alarm {alarm}"


def why_not(pointer: ProductionPointer | None, alarm: AlarmEvent, watch: timedelta) -> NoRollback | None:
    """Why ``alarm`` must not roll ``pointer`` back (None: it must). Pure."""
    if pointer is None:
        return NoRollback("no model has been promoted: nothing to roll back", "no_production")
    current = pointer.current
    if current.action.startswith("rollback"):
        return NoRollback(
            f"production {current.version} is already a rollback ({current.action}): nothing changed",
            "already_rolled_back",
        )
    if len(pointer.history) < 2:
        return NoRollback(
            f"nothing to roll back to: {current.version} is the only version in the history",
            "nothing_to_roll_back_to",
        )
    try:
        promoted = _timestamp(current.promoted_at)
    except BadEvent:
        raise RegistryError(f"production.json's promoted_at {current.promoted_at!r} is not a time") from None
    if alarm.changed_at < promoted:
        return NoRollback(
            f"the alarm changed state at {alarm.changed_at.isoformat()}, before {current.version} "
            f"became production at {current.promoted_at}",
            "alarm_before_promotion",
        )
    if alarm.changed_at - promoted > watch:
        minutes = int(watch.total_seconds() // 60)
        return NoRollback(
            f"{current.version} became production at {current.promoted_at}, more than {minutes} minutes "
            f"before the alarm ({alarm.changed_at.isoformat()}): outside the watch window",
            "outside_watch_window",
        )
    return None


class AlarmRollback:
    """Rolls a dataset's production back when a watched alarm goes to ALARM within the watch window."""

    def __init__(
        self,
        store: ObjectStore,
        registry: PointerStore,
        settings: RollbackSettings,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.registry = registry
        self.settings = settings
        self.now = now

    def dataset_of(self, alarm: AlarmEvent) -> str:
        if len(alarm.datasets) > 1:
            raise _bad(f"alarm {alarm.name} watches several datasets: {', '.join(alarm.datasets)}")
        dataset = alarm.datasets[0] if alarm.datasets else self.settings.default_dataset
        if not dataset:
            raise _bad(f"alarm {alarm.name} names no dataset and the function has no default dataset")
        return layout.check_dataset_name(dataset)

    def handle(self, alarm: AlarmEvent) -> AlarmOutcome:
        name = alarm.name
        if self.settings.watch_minutes <= 0:
            message = "automatic rollback is off (RollbackWatchMinutes 0)"
            return AlarmOutcome(False, "watch_off", message, name)
        if name not in self.settings.alarms:
            watched = ", ".join(sorted(self.settings.alarms)) or "none"
            message = f"alarm {name} is not one that rolls production back (watched: {watched})"
            return AlarmOutcome(False, "unknown_alarm", message, name)
        if alarm.state != ALARM:
            return AlarmOutcome(False, "not_alarm", f"alarm {name} went to {alarm.state}, not {ALARM}", name)
        dataset = self.dataset_of(alarm)
        watch = timedelta(minutes=self.settings.watch_minutes)
        before: list[str] = []

        def check(current: ProductionPointer | None) -> None:
            refusal = why_not(current, alarm, watch)
            if refusal is not None:
                raise refusal
            before[:] = [current.version] if current is not None else []

        try:
            pointer = rollback_production(
                self.store,
                self.registry,
                dataset,
                None,
                now=self.now(),
                reason=rollback_reason(name),
                check=check,
            )
        except NoRollback as exc:
            return AlarmOutcome(False, exc.code, exc.message, name, dataset)
        message = f"rolled {dataset} back from {before[-1]} to {pointer.version} on alarm {name}"
        return AlarmOutcome(True, "rolled_back", message, name, dataset, pointer.version, before[-1])
