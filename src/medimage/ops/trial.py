"""A dataset's silent trial from the operator's side: submit a model, read the scorecard, end the trial.

- `submit_model`: a model trained outside the workflow (a `medimage train` directory or a training job's
  ``model.tar.gz``) is gated against production on the newest manifest's test split and, if it passes,
  becomes the candidate (production where the dataset has none). A model trained on another split (a
  local run's own split) is first run over that test split with LiteRT, as the gate re-measures a
  champion, so both are judged on the same images. Its files are published under
  ``models/<dataset>/<version>/`` before the gate, since that run reads them from there.
- `compute_scorecard`: the pairs serving recorded under ``trials/<dataset>/<candidate>/pairs/``, joined
  with the reviewer verdicts (the ``review`` a `medimage review label` noted in the image's result JSON;
  only images production sent to review can have one), and ``core.trial.scorecard`` of them, written to
  ``trials/<dataset>/<candidate>/scorecard.json``. Recomputed from every pair each time: a trial is days
  of a site's images, not millions, and a full recount is what a person can check.
- `end_trial`: promote or drop the candidate, with the scorecard of that moment in the registry.

The bucket is any object store with ``list_keys`` (`medimage.adapters.s3.S3ObjectStore`; fakes in tests).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from medimage.core import layout
from medimage.core.errors import MedimageError
from medimage.core.executions import TrainingResult
from medimage.core.registry import (
    ModelEntry,
    ProductionPointer,
    drop_candidate,
    promote_candidate,
    sha256_hex,
)
from medimage.core.trial import TrialPair, pairs_prefix, scorecard, scorecard_key
from medimage.services.gate import GateRequest, GateService, read_json_member
from medimage.services.ports import ArtifactReader, ChampionEvaluator, ObjectStore, PointerStore
from medimage.services.promote import PromoteRequest, PromoteService

log = logging.getLogger(__name__)


class TrialProblem(MedimageError):
    code = "trial"


class TrialBucket(ObjectStore, Protocol):
    def list_keys(self, prefix: str) -> Iterator[str]: ...


# ---------------------------------------------------------------- scorecard


def read_pairs(store: TrialBucket, dataset: str, candidate_version: str) -> list[TrialPair]:
    """Every pair recorded for the candidate, oldest object first; a line that is not a pair is skipped
    (logged), so one damaged object does not hide the rest."""
    pairs = []
    for key in sorted(store.list_keys(pairs_prefix(dataset, candidate_version))):
        for number, line in enumerate((store.get_text(key) or "").splitlines(), 1):
            if not line.strip():
                continue
            try:
                pairs.append(TrialPair.from_dict(json.loads(line)))
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("skipping line %d of %s: %s", number, key, exc)
    return pairs


def reviewer_verdicts(store: ObjectStore, dataset: str, pairs: list[TrialPair]) -> dict[str, str]:
    """{image key: the label a reviewer gave it}, for the dropped images production sent to review."""
    verdicts: dict[str, str] = {}
    for pair in pairs:
        key = pair.image_key
        if not key or not pair.champion.needs_review or key in verdicts:
            continue
        result = store.get_json(layout.prediction_key(dataset, key))
        review = result.get("review") if isinstance(result, dict) else None
        if isinstance(review, dict) and isinstance(review.get("label"), str):
            verdicts[key] = review["label"]
    return verdicts


def candidate_version(registry: PointerStore, dataset: str, version: str | None = None) -> str:
    if version:
        return version
    pointer = registry.pointer(dataset)
    if pointer is None or pointer.candidate is None:
        raise TrialProblem(
            f"dataset {dataset} has no candidate on trial (pass --candidate VERSION)", "no_trial"
        )
    return pointer.candidate.version


def compute_scorecard(
    store: TrialBucket, dataset: str, version: str, now: datetime | None = None, write: bool = True
) -> dict[str, Any]:
    """The trial's scorecard from every stored pair, written to its ``scorecard.json`` unless ``write``
    is off."""
    pairs = read_pairs(store, dataset, version)
    card = scorecard(dataset, version, pairs, reviewer_verdicts(store, dataset, pairs))
    card["computed_at"] = (now or datetime.now(UTC)).isoformat(timespec="seconds")
    card["scorecard_key"] = scorecard_key(dataset, version)
    if write:
        store.put_json(card["scorecard_key"], card)
    return card


# ---------------------------------------------------------------- ending a trial


def end_trial(
    store: TrialBucket,
    registry: PointerStore,
    dataset: str,
    promote: bool,
    reason: str = "",
    now: datetime | None = None,
) -> ProductionPointer:
    """Promote or drop the candidate on trial, recording the scorecard at that moment."""
    version = candidate_version(registry, dataset)
    when = now or datetime.now(UTC)
    card = compute_scorecard(store, dataset, version, when)
    summary = {k: card[k] for k in ("pairs", "agreement", "review", "reviewed", "scorecard_key")}
    stamp = when.isoformat()
    if promote:
        return registry.update(dataset, lambda cur: promote_candidate(cur, stamp, version, summary))
    return registry.update(
        dataset, lambda cur: drop_candidate(cur, stamp, reason or "dropped by hand", version, summary)
    )


# ---------------------------------------------------------------- submit


class DirectoryArtifacts:
    """The `ArtifactReader` of a model directory (`medimage train`'s output): its top-level files."""

    def read_members(self, uri: str) -> dict[str, bytes]:
        folder = Path(uri)
        if not folder.is_dir():
            raise TrialProblem(f"{uri} is not a model directory", "bad_model")
        return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def submit_model(
    store: ObjectStore,
    registry: PointerStore,
    artifacts: ArtifactReader,
    evaluator: ChampionEvaluator,
    dataset: str,
    source: str,
    manifest_version: str,
    preset: str,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Gate the model at ``source`` against production on ``manifest_version``'s test split; if it
    passes, make it the candidate (production where there is none). ``{"version", "gate", "promotion"}``
    (``promotion`` None when the gate did not pass)."""
    when = now or datetime.now(UTC)
    files = artifacts.read_members(source)
    meta = read_json_member(files, "model.json")
    model_file = str(meta.get("model_file") or "model.tflite")
    if model_file not in files:
        raise TrialProblem(f"{source} has no {model_file} (model.json model_file)", "bad_model")
    version = f"{manifest_version}-m{sha256_hex(files[model_file])[:8]}"
    request = GateRequest(
        dataset=dataset,
        bucket=store.bucket,
        training=TrainingResult(version, "Completed", source, []),
        preset=preset,
        manifest_version=manifest_version,
        manifest_prefix=layout.manifest_prefix(dataset, manifest_version),
    )
    challenger = None
    if meta.get("manifest_version") not in (None, manifest_version):
        prefix = layout.model_prefix(dataset, version)
        for name in ("model.json", "labels.txt", model_file):
            if name in files:
                store.put_bytes(prefix + name, files[name])
        entry = ModelEntry(version, prefix + model_file, sha256_hex(files[model_file]), when.isoformat())
        challenger = evaluator.evaluate(entry, request.manifest_prefix, manifest_version)
    gate = GateService(store, registry, artifacts, evaluator, now=lambda: when).run(request, challenger)
    promotion = None
    if gate["passed"]:
        promoter = PromoteService(store, registry, artifacts, now=lambda: when, trial=True)
        promotion = promoter.run(PromoteRequest(dataset, store.bucket, request.training))
    return {"version": version, "gate": gate, "promotion": promotion}
