"""One loaded model per dataset, kept in step with the registry's production pointer.

The pointer (`models/<dataset>/production.json`) is read at most every `check_interval_s` seconds, so a
warm container serves from memory; a new pointer makes the cache fetch that version, verify its sha256
and load it. A model that fails verification or loading is refused: the previous one keeps serving and
the refused pointer is not fetched again until `retry_refused_s` has passed. The pointer's ``candidate``
(a model on silent trial) is only remembered at a check; it is loaded by `candidate`, which the trial calls
after production's answer is ready, and a candidate that cannot be loaded is logged and skipped. Fetching
goes through the `medimage.inference.ports.ModelSource` port (S3 in the Lambda, a local file for
`medimage serve --model`, a fake in tests).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medimage.core.errors import ModelUnavailable, NoProductionModel
from medimage.core.preprocess import PreprocessSpec
from medimage.inference.model import LABELS_TXT, ModelError, TFLiteClassifier, output_kind, read_model_json
from medimage.inference.ports import ModelSource, ServingPointer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedModel:
    """A production model in memory, with the pointer facts (version, digest, file) it was loaded for."""

    dataset: str
    version: str
    sha256: str
    classifier: TFLiteClassifier
    model_file: str = ""

    @property
    def variant(self) -> str:
        """``int8`` or ``float``: which of the version's exports is served (``model.json`` names both)."""
        return "int8" if self.model_file == self.classifier.meta.get("int8_model_file") else "float"


def load_verified(model_dir: Path, pointer: ServingPointer) -> TFLiteClassifier:
    """Load a fetched model only if its bytes are the ones the pointer names."""
    content = (model_dir / pointer.model_file).read_bytes()
    digest = hashlib.sha256(content).hexdigest()
    if digest != pointer.model_sha256:
        raise ModelError(
            f"{pointer.model_key} has sha256 {digest[:12]}…, but production.json names "
            f"{pointer.model_sha256[:12]}…: the file is corrupt or was replaced"
        )
    meta = read_model_json(model_dir)
    labels = list(meta.get("labels") or [])
    if not labels:
        raise ModelError(f"model.json of {pointer.dataset} {pointer.version} lists no labels")
    labels_txt = model_dir / LABELS_TXT
    if labels_txt.exists():
        listed = [
            line.strip() for line in labels_txt.read_text(encoding="utf-8").splitlines() if line.strip()
        ]
        if listed != labels:
            raise ModelError(f"labels.txt {listed} disagrees with model.json {labels}")
    try:
        spec = PreprocessSpec.from_dict(meta["preprocess"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"model.json has no usable 'preprocess': {exc}") from None
    return TFLiteClassifier(content, labels, spec, meta, output_kind(meta, pointer.model_file))


@dataclass
class _Entry:
    """One dataset's cache slot: its model, when the pointer was last read, and a version it refused."""

    model: LoadedModel | None = None
    checked_at: float = float("-inf")
    refused: tuple[str, str] | None = None
    refused_at: float = float("-inf")
    refused_reason: str = ""
    candidate_pointer: ServingPointer | None = None
    candidate: LoadedModel | None = None
    candidate_refused: tuple[str, str] | None = None
    candidate_refused_at: float = float("-inf")


class ModelCache:
    """Thread-safe map dataset -> LoadedModel with periodic pointer checks."""

    def __init__(
        self,
        source: ModelSource,
        check_interval_s: float = 60.0,
        retry_refused_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        loader: Callable[[Path, ServingPointer], TFLiteClassifier] | None = None,
    ) -> None:
        self.source = source
        self._loader = loader or load_verified
        self.check_interval_s = check_interval_s
        self.retry_refused_s = retry_refused_s if retry_refused_s is not None else 5 * check_interval_s
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()

    def loaded(self) -> dict[str, LoadedModel]:
        """The models in memory now, without touching the source (for /health)."""
        return {ds: e.model for ds, e in self._entries.items() if e.model is not None}

    def get(self, dataset: str) -> LoadedModel:
        with self._lock:
            entry = self._entries.setdefault(dataset, _Entry())
            now = self._clock()
            if entry.model is not None and now - entry.checked_at < self.check_interval_s:
                return entry.model
            self._refresh(dataset, entry, now)
            if entry.model is None:
                raise ModelUnavailable(
                    f"the production model of '{dataset}' cannot be served: {entry.refused_reason}"
                )
            return entry.model

    def _refresh(self, dataset: str, entry: _Entry, now: float) -> None:
        try:
            raw = self.source.read_pointer(dataset)
        except Exception as exc:  # a transient registry error must not take a serving model down
            if entry.model is None:
                raise ModelUnavailable(f"the model registry of '{dataset}' cannot be read: {exc}") from None
            log.warning("pointer check failed, keeping %s %s: %s", dataset, entry.model.version, exc)
            entry.checked_at = now
            return
        if raw is None:
            entry.model = None
            entry.candidate_pointer = None
            entry.checked_at = now
            raise NoProductionModel(
                f"no production model for dataset '{dataset}' yet: train one and let the gate promote it"
            )
        try:
            pointer = ServingPointer.from_dict(raw, dataset)
        except ModelError as exc:
            self._refuse(entry, ("", ""), str(exc), now)
            return
        wanted = (pointer.version, pointer.model_sha256)
        entry.checked_at = now
        entry.candidate_pointer = pointer.candidate
        if entry.model is not None and (entry.model.version, entry.model.sha256) == wanted:
            return
        if entry.refused == wanted and now - entry.refused_at < self.retry_refused_s:
            return
        try:
            classifier = self._loader(self.source.download(pointer), pointer)
        except (ModelError, OSError) as exc:
            self._refuse(entry, wanted, f"version {pointer.version} was refused: {exc}", now)
            return
        previous = entry.model.version if entry.model else None
        entry.model = LoadedModel(
            dataset, pointer.version, pointer.model_sha256, classifier, pointer.model_file
        )
        entry.refused = None
        log.info("loaded model %s %s (previous %s)", dataset, pointer.version, previous)

    def has_candidate(self, dataset: str) -> bool:
        """Whether the last pointer check found a candidate on trial (no fetching, no loading)."""
        entry = self._entries.get(dataset)
        return entry is not None and entry.candidate_pointer is not None

    def candidate(self, dataset: str) -> LoadedModel | None:
        """The candidate on trial beside production, loaded and verified on first use; None when there is
        none or it cannot be loaded (logged, and not fetched again until ``retry_refused_s`` has passed)."""
        with self._lock:
            entry = self._entries.get(dataset)
            pointer = entry.candidate_pointer if entry is not None else None
            if entry is None or pointer is None:
                return None
            wanted = (pointer.version, pointer.model_sha256)
            if entry.candidate is not None and (entry.candidate.version, entry.candidate.sha256) == wanted:
                return entry.candidate
            now = self._clock()
            if entry.candidate_refused == wanted and now - entry.candidate_refused_at < self.retry_refused_s:
                return None
            try:
                classifier = self._loader(self.source.download(pointer), pointer)
            except Exception as exc:  # whatever is wrong with a candidate, production keeps serving
                log.error("refused candidate %s %s: %s", dataset, pointer.version, exc)
                entry.candidate, entry.candidate_refused, entry.candidate_refused_at = None, wanted, now
                return None
            entry.candidate = LoadedModel(
                dataset, pointer.version, pointer.model_sha256, classifier, pointer.model_file
            )
            log.info("loaded candidate %s %s", dataset, pointer.version)
            return entry.candidate

    def _refuse(self, entry: _Entry, wanted: tuple[str, str], reason: str, now: float) -> None:
        kept = entry.model.version if entry.model else None
        log.error("refused production model: %s; still serving %s", reason, kept)
        entry.refused, entry.refused_at, entry.refused_reason = wanted, now, reason
        entry.checked_at = now


class LocalModelSource:
    """Serves one model file as the production model of one dataset (`medimage serve --model`).

    The file is re-hashed at each pointer check, so replacing it on disk is a promotion.
    """

    def __init__(self, model_path: str | Path, dataset: str | None = None) -> None:
        path = Path(model_path)
        if path.is_dir():  # a model directory: the variant its model.json serves
            path = path / str(read_model_json(path).get("model_file") or "model.tflite")
        self.model_path = path
        if not self.model_path.is_file():
            raise FileNotFoundError(f"{self.model_path} does not exist")
        meta = read_model_json(self.model_path.parent)
        self.dataset = dataset or str(meta.get("dataset") or "local")

    def read_pointer(self, dataset: str) -> dict[str, Any] | None:
        if dataset != self.dataset:
            return None
        digest = hashlib.sha256(self.model_path.read_bytes()).hexdigest()
        return {
            "dataset": dataset,
            "version": f"local-{digest[:12]}",
            "model_key": self.model_path.name,
            "model_sha256": digest,
        }

    def download(self, pointer: ServingPointer) -> Path:
        return self.model_path.parent
