"""The model registry's production pointer (``models/<dataset>/production.json``) and its rules.

The pointer names the serving version, the key and sha256 of its model file (serving verifies the bytes
it loads against it), its metrics and when it became production, plus ``history``: every version that
is or was production and has not been rolled back, newest first, the current one included.

- promote(v): v becomes current and the head of the history; promoting the current version again is a
  no-op, so a retried Promote task changes nothing.
- rollback(): the previous entry of the history becomes current; the versions above it are withdrawn
  from the history into ``rolled_back`` (so a second rollback goes one further back, not to and fro).
  ``rollback(to=v)`` goes back to any older entry of the history. A ``reason`` (e.g. ``alarm <name>``
  for an automatic rollback) is recorded in the restored entry's action and in the withdrawn records.
- A version is promoted at most once: promoting a version that is or was production (in ``history`` or
  ``rolled_back``) changes nothing, so a Promote task retried after its write landed (its answer lost,
  then production moved on or was rolled back) never re-applies it.
- supersede(v, by): a promotion that lost the race (its gate compared against a champion that is no
  longer production) is recorded in ``superseded`` while the winner stays current.
- nominate(v): where a silent trial is configured, a model that passed the gate becomes the dataset's
  ``candidate`` beside production instead of replacing it; serving runs it silently on a share of the
  images (``medimage.inference.trial``). A newer candidate replaces the one on trial. Nominating the
  candidate again, or a version that is or was production or already ended a trial, changes nothing.
- promote_candidate() / drop_candidate(): a trial ends either way, recorded in ``trials`` (newest first).
  The candidate is promoted only while production is still the champion its gate compared against.

Pure: the registry store adapter does the reading and the conditional writing.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Any

from medimage.core.errors import ChampionChanged, RegistryError

MAX_HISTORY = 100


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class ModelEntry:
    version: str
    model_key: str
    model_sha256: str
    promoted_at: str
    metrics: dict[str, Any] = field(default_factory=dict)
    action: str = "promote"
    # A person's sign-off that let this version in (``core.sign_off.Decision``): who, when, the note and
    # the scorecard of that moment; None where no sign-off was asked for.
    sign_off: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        data = {
            "version": self.version,
            "model_sha256": self.model_sha256,
            "promoted_at": self.promoted_at,
            "metrics": self.metrics,
            "model_key": self.model_key,
            "action": self.action,
        }
        if self.sign_off is not None:
            data["sign_off"] = self.sign_off
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelEntry:
        try:
            return cls(
                version=str(data["version"]),
                model_key=str(data["model_key"]),
                model_sha256=str(data["model_sha256"]),
                promoted_at=str(data["promoted_at"]),
                metrics=dict(data.get("metrics") or {}),
                action=str(data.get("action", "promote")),
                sign_off=dict(data["sign_off"]) if isinstance(data.get("sign_off"), dict) else None,
            )
        except KeyError as exc:
            raise RegistryError(f"a registry entry lacks {exc}") from None


@dataclass(frozen=True)
class Candidate:
    """The model on silent trial: its entry (``promoted_at``: when it became candidate) and the production
    version its gate compared it against."""

    entry: ModelEntry
    champion: str

    @property
    def version(self) -> str:
        return self.entry.version

    def to_dict(self) -> dict[str, Any]:
        return {**self.entry.to_dict(), "champion": self.champion}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Candidate:
        if not isinstance(data.get("champion"), str):
            raise RegistryError("the candidate of production.json names no champion")
        return cls(
            ModelEntry.from_dict({**data, "action": data.get("action", "candidate")}), data["champion"]
        )


@dataclass(frozen=True)
class ProductionPointer:
    dataset: str
    history: tuple[ModelEntry, ...]
    rolled_back: tuple[dict[str, Any], ...] = ()
    superseded: tuple[dict[str, Any], ...] = ()
    candidate: Candidate | None = None
    trials: tuple[dict[str, Any], ...] = ()

    def __post_init__(self) -> None:
        if not self.history:
            raise RegistryError(f"the production pointer of '{self.dataset}' has an empty history")

    @property
    def current(self) -> ModelEntry:
        return self.history[0]

    @property
    def version(self) -> str:
        return self.current.version

    def ever_promoted(self, version: str) -> bool:
        """Whether ``version`` is or was production (in the history, or withdrawn by a rollback)."""
        return any(e.version == version for e in self.history) or any(
            r.get("version") == version for r in self.rolled_back
        )

    def ended_trial(self, version: str) -> bool:
        """Whether ``version`` was a candidate whose trial ended (promoted, dropped or replaced)."""
        return any(t.get("version") == version for t in self.trials)

    def to_dict(self) -> dict[str, Any]:
        current = self.current
        return {
            "dataset": self.dataset,
            "version": current.version,
            "model_key": current.model_key,
            "model_sha256": current.model_sha256,
            "metrics": current.metrics,
            "promoted_at": current.promoted_at,
            "history": [e.to_dict() for e in self.history],
            "rolled_back": list(self.rolled_back),
            "superseded": list(self.superseded),
            "candidate": None if self.candidate is None else self.candidate.to_dict(),
            "trials": list(self.trials),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProductionPointer:
        if not isinstance(data, dict) or "dataset" not in data:
            raise RegistryError("production.json is not a pointer object with a 'dataset'")
        history = tuple(ModelEntry.from_dict(e) for e in data.get("history") or [])
        if history and history[0].version != data.get("version"):
            raise RegistryError(
                f"production.json names {data.get('version')} but its history starts with "
                f"{history[0].version}"
            )
        candidate = data.get("candidate")
        return cls(
            str(data["dataset"]),
            history,
            tuple(data.get("rolled_back") or []),
            tuple(data.get("superseded") or []),
            Candidate.from_dict(candidate) if isinstance(candidate, dict) else None,
            tuple(data.get("trials") or []),
        )


def promote(
    current: ProductionPointer | None, dataset: str, entry: ModelEntry, expected_champion: str | None
) -> ProductionPointer:
    """The pointer after promoting ``entry`` (history newest first, capped at MAX_HISTORY).

    ``expected_champion`` is the production version the gate compared against (None: there was none);
    if production has moved on since, the comparison is stale and ChampionChanged is raised."""
    if current is not None and current.ever_promoted(entry.version):
        return current
    found = None if current is None else current.version
    if found != expected_champion:
        raise ChampionChanged(
            f"the gate compared {entry.version} against production version "
            f"{expected_champion}, but production is now {found}"
        )
    if current is None:
        return ProductionPointer(dataset, (entry,))
    return replace(current, history=(entry, *current.history)[:MAX_HISTORY])


def supersede(current: ProductionPointer, version: str, by: str, now: str) -> ProductionPointer:
    """The pointer with ``version`` recorded as superseded by production version ``by`` (once per pair);
    the current version and the history are unchanged."""
    if any(s.get("version") == version and s.get("by") == by for s in current.superseded):
        return current
    record = {"version": version, "by": by, "superseded_at": now}
    return replace(current, superseded=(record, *current.superseded)[:MAX_HISTORY])


def rollback(
    current: ProductionPointer | None, now: str, to: str | None = None, reason: str | None = None
) -> ProductionPointer:
    """The pointer after swapping back to the previous version (or to ``to``, an older history entry);
    ``reason`` is appended to the action (``rollback from V on <reason>``) and kept in ``rolled_back``."""
    if current is None:
        raise RegistryError("nothing to roll back: no model was ever promoted")
    versions = [e.version for e in current.history]
    if to is None:
        if len(versions) < 2:
            raise RegistryError(f"nothing to roll back to: {current.version} is the only version in history")
        index = 1
    elif to == current.version:
        raise RegistryError(f"{to} is already the production version")
    elif to in versions:
        index = versions.index(to)
    else:
        raise RegistryError(f"{to} is not in the history of '{current.dataset}': {', '.join(versions)}")
    action = f"rollback from {current.version}" + (f" on {reason}" if reason else "")
    target = replace(current.history[index], promoted_at=now, action=action)
    extra = {"reason": reason} if reason else {}
    withdrawn = tuple(
        {"version": e.version, "model_sha256": e.model_sha256, "rolled_back_at": now, **extra}
        for e in current.history[:index]
    )
    return replace(
        current,
        history=(target, *current.history[index + 1 :]),
        rolled_back=(*withdrawn, *current.rolled_back)[:MAX_HISTORY],
    )


def _ended(candidate: Candidate, outcome: str, now: str, **details: Any) -> dict[str, Any]:
    return {
        "version": candidate.version,
        "champion": candidate.champion,
        "outcome": outcome,
        "started_at": candidate.entry.promoted_at,
        "ended_at": now,
        **details,
    }


def nominate(
    current: ProductionPointer | None, entry: ModelEntry, expected_champion: str | None, now: str
) -> ProductionPointer:
    """The pointer with ``entry`` as the candidate on silent trial beside production.

    A dataset without production has nothing to compare against: promote instead (RegistryError). The
    gate's champion must still be production (ChampionChanged otherwise, as for promote)."""
    if current is None:
        raise RegistryError("no production model to run a trial against: promote the model instead")
    version = entry.version
    if current.ever_promoted(version) or current.ended_trial(version):
        return current
    if current.candidate is not None and current.candidate.version == version:
        return current
    if current.version != expected_champion:
        raise ChampionChanged(
            f"the gate compared {version} against production version {expected_champion}, "
            f"but production is now {current.version}"
        )
    trials = current.trials
    if current.candidate is not None:
        trials = (_ended(current.candidate, "replaced", now, by=version), *trials)
    candidate = Candidate(replace(entry, action="candidate"), current.version)
    return replace(current, candidate=candidate, trials=trials[:MAX_HISTORY])


def _the_candidate(
    current: ProductionPointer | None, version: str | None
) -> tuple[ProductionPointer, Candidate]:
    if current is None or current.candidate is None:
        raise RegistryError("no candidate is on trial")
    if version is not None and current.candidate.version != version:
        raise RegistryError(f"the candidate on trial is {current.candidate.version}, not {version}")
    return current, current.candidate


def promote_candidate(
    current: ProductionPointer | None,
    now: str,
    version: str | None = None,
    scorecard: dict[str, Any] | None = None,
) -> ProductionPointer:
    """The candidate becomes production (the head of the history) and its trial ends as ``promoted``,
    with the scorecard at that moment when one is given."""
    pointer, candidate = _the_candidate(current, version)
    if pointer.version != candidate.champion:
        raise ChampionChanged(
            f"the candidate {candidate.version} was gated and trialled against {candidate.champion}, but "
            f"production is now {pointer.version}: drop it and submit it again"
        )
    entry = replace(candidate.entry, promoted_at=now, action="promote after trial")
    ended = _ended(candidate, "promoted", now, scorecard=scorecard)
    return replace(
        pointer,
        history=(entry, *pointer.history)[:MAX_HISTORY],
        candidate=None,
        trials=(ended, *pointer.trials)[:MAX_HISTORY],
    )


def drop_candidate(
    current: ProductionPointer | None,
    now: str,
    reason: str,
    version: str | None = None,
    scorecard: dict[str, Any] | None = None,
) -> ProductionPointer:
    """The trial ends as ``dropped``; production is untouched."""
    pointer, candidate = _the_candidate(current, version)
    ended = _ended(candidate, "dropped", now, reason=reason, scorecard=scorecard)
    return replace(pointer, candidate=None, trials=(ended, *pointer.trials)[:MAX_HISTORY])
