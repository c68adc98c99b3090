"""The Promote task: publish a gated model under ``models/<dataset>/<version>/`` and swap the pointer.

Order matters for readers: every file of the version is written before the pointer names it, so
serving never follows a pointer to a half-copied model. The gate's own record (gate.json) is the
authority: a model whose recorded decision is not a pass is never promoted, whatever the event says.
The swap names the champion the gate compared against; if production moved on meanwhile the swap is
refused with ChampionChanged, production.json records the version as superseded by the winner, and the
state machine runs the gate again. A version is promoted at most once (``core.registry.promote``): a
retried task whose swap had landed changes nothing, even after production moved on or was rolled back.

With a silent trial configured (``trial``: the template's ``CandidateTrial``), a model that passes the gate
where the dataset already has production becomes its candidate instead (``core.registry.nominate``):
serving keeps answering with production and runs the candidate silently beside it, and a person ends the
trial (`medimage model promote-candidate|drop-candidate`). A dataset's first model has nothing to be
trialled against and is promoted. Without a trial the gate's pass promotes at once, as it always did.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from medimage.core import layout
from medimage.core.errors import ChampionChanged, PromoteRefused
from medimage.core.executions import ModelTask
from medimage.core.registry import (
    ModelEntry,
    ProductionPointer,
    nominate,
    promote,
    rollback,
    sha256_hex,
    supersede,
)
from medimage.services.gate import read_json_member
from medimage.services.ports import ArtifactReader, ObjectStore, PointerStore

# What a model version folder holds (docs/CONTRACTS.md), besides gate.json written by the gate.
REQUIRED_FILES = ("model.json", "labels.txt", "evaluation.json")
_CONTENT_TYPES = {".json": "application/json", ".txt": "text/plain; charset=utf-8"}


@dataclass(frozen=True)
class PromoteRequest(ModelTask):
    @classmethod
    def from_event(cls, event: dict[str, Any]) -> PromoteRequest:
        return cls(**ModelTask.fields(event, PromoteRefused))


class PromoteService:
    def __init__(
        self,
        store: ObjectStore,
        registry: PointerStore,
        artifacts: ArtifactReader,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        trial: bool = False,
    ) -> None:
        self.store = store
        self.registry = registry
        self.artifacts = artifacts
        self.now = now
        self.trial = trial

    def run(self, request: PromoteRequest, hold: bool = False) -> dict[str, Any]:
        """Publish the version and swap the pointer (or nominate it). ``hold`` (a person signs off first,
        ``services.sign_off``): a model that would replace production is published but the pointer is
        left as it is (stage ``pending``); a candidate is still nominated, so its trial runs meanwhile."""
        prefix = layout.model_prefix(request.dataset, request.version)
        gate = self.store.get_json(prefix + "gate.json")
        if not isinstance(gate, dict) or gate.get("passed") is not True:
            raise PromoteRefused(f"{prefix}gate.json does not record a passed gate decision: not promoting")
        files = self.artifacts.read_members(request.training.model_artifacts)
        missing = [name for name in REQUIRED_FILES if name not in files]
        meta = read_json_member(files, "model.json")
        model_file = str(meta.get("model_file") or "model.tflite")
        if model_file not in files:
            missing.append(model_file)
        # The Android app's model (with TFLite metadata), when the trainer could write one (model.json
        # ``android``); it is copied beside the served file like every other top-level member.
        android_file = (meta.get("android") or {}).get("file")
        if android_file and android_file not in files:
            missing.append(str(android_file))
        if missing:
            raise PromoteRefused(f"model.tar.gz lacks {', '.join(missing)}")
        for name, data in sorted(files.items()):
            if "/" in name or name == "gate.json":
                continue  # only the model's own top-level files; the gate's record stays the gate's
            suffix = name[name.rfind(".") :]
            self.store.put_bytes(prefix + name, data, _CONTENT_TYPES.get(suffix, "application/octet-stream"))
        champion = (gate.get("champion") or {}).get("version")
        entry = ModelEntry(
            version=request.version,
            model_key=prefix + model_file,
            model_sha256=sha256_hex(files[model_file]),
            promoted_at=self.now().isoformat(),
            metrics=gate["metrics"],
        )

        if hold and not (self.trial and self.registry.pointer(request.dataset) is not None):
            return self._answer(request, "pending", entry, champion, android_file, None)

        def change(current: ProductionPointer | None) -> ProductionPointer:
            if self.trial and current is not None:
                return nominate(current, entry, champion, entry.promoted_at)
            return promote(current, request.dataset, entry, champion)

        try:
            pointer = self.registry.update(request.dataset, change)
        except ChampionChanged:
            self._record_superseded(request.dataset, request.version)
            raise
        # A retried task whose swap had landed finds its entry already there (maybe no longer current).
        stage, mine = _stage_of(pointer, request.version, entry)
        return self._answer(request, stage, mine, champion, android_file, pointer.version)

    @staticmethod
    def _answer(
        request: PromoteRequest,
        stage: str,
        mine: ModelEntry,
        champion: str | None,
        android_file: Any,
        production_version: str | None,
    ) -> dict[str, Any]:
        prefix = layout.model_prefix(request.dataset, request.version)
        return {
            "promoted": stage == "production",
            "stage": stage,
            "version": request.version,
            "model_key": mine.model_key,
            "model_sha256": mine.model_sha256,
            "previous_version": champion,
            "android_key": prefix + str(android_file) if android_file else None,
            "pointer_key": layout.production_pointer_key(request.dataset),
            "promoted_at": mine.promoted_at,
            "production_version": production_version,
        }

    def _record_superseded(self, dataset: str, version: str) -> None:
        """The promotion lost the race: production.json records it as superseded by the winner."""
        when = self.now().isoformat()

        def change(current: ProductionPointer | None) -> ProductionPointer:
            if current is None:
                raise ChampionChanged(f"production of '{dataset}' disappeared while promoting {version}")
            return supersede(current, version, current.version, when)

        self.registry.update(dataset, change)


def _stage_of(pointer: ProductionPointer, version: str, entry: ModelEntry) -> tuple[str, ModelEntry]:
    """Where ``version`` stands after the swap: ``production`` (in the history, maybe no longer current),
    ``candidate``, or ``trial_ended`` (a retried task whose candidate was dropped meanwhile)."""
    mine = next((e for e in pointer.history if e.version == version), None)
    if mine is not None or pointer.ever_promoted(version):
        return "production", mine or entry
    if pointer.candidate is not None and pointer.candidate.version == version:
        return "candidate", pointer.candidate.entry
    return "trial_ended", entry


def rollback_production(
    store: ObjectStore,
    registry: PointerStore,
    dataset: str,
    to: str | None,
    now: datetime | None = None,
    reason: str | None = None,
    check: Callable[[ProductionPointer | None], None] | None = None,
) -> ProductionPointer:
    """Swap production back to the previous version (or ``to``), after checking its model file is still
    there with the bytes the registry recorded, so a rollback never points serving at nothing.

    ``reason`` is recorded with the rollback (``core.registry.rollback``). ``check`` sees the pointer the
    swap is about to replace (inside the conditional write) and raises to leave production as it is."""
    when = (now or datetime.now(UTC)).isoformat()

    def change(current: ProductionPointer | None) -> ProductionPointer:
        if check is not None:
            check(current)
        new = rollback(current, when, to, reason)
        data = store.get_bytes(new.current.model_key)
        if data is None:
            raise PromoteRefused(f"{new.current.model_key} is missing: cannot roll back to {new.version}")
        if sha256_hex(data) != new.current.model_sha256:
            raise PromoteRefused(f"{new.current.model_key} no longer has the recorded sha256")
        return new

    return registry.update(layout.check_dataset_name(dataset), change)
