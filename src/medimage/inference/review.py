"""The review queue of a data bucket: the images drop-to-label was unsure of, and a clinician's verdict.

Drop-to-label stores each prediction that needs review at ``review/<dataset>/<name>`` with its result JSON
at ``<name>.json``. Labelling one moves the image into ``incoming/labeled/<dataset>/<folder>/<file>``,
where annotate catalogues it and the next ``_commit`` trains on it. The folder and file name are chosen so
that the dataset's preset reads the clinician's label from them (`labeled_key_for`): ``chestxray2017``
tells viral from bacterial pneumonia by ``virus``/``bacteria`` in the file name, so a file is renamed
(``person1_bacteria_2.jpeg`` labelled viral becomes ``PNEUMONIA/person1_virus_2.jpeg``, keeping the
patient id the split groups by). The copy is stored and checked before anything leaves ``review/``;
running the same label again after an interruption finishes the move without a second copy.

The verdict (the label, the reviewer, accepted or modified) is noted in the prediction result under
``review``; when the AI's result has a DICOM SR, a second SR states the verdict and refers to the first
(`medimage.results.sr.review_report`), so the AI's answer and the person's stay apart.

Both ways a clinician works the queue use this module: `medimage review` from a terminal, and the inference
API's review worklist in the browser (`medimage.inference.review_api`), which ships in the inference image.
The store is the data bucket (`medimage.adapters.s3.S3ObjectStore` against AWS or `medimage up`, an
in-memory store in tests); this module imports no AWS library.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any, Protocol

from medimage.core.errors import MedimageError
from medimage.core.layout import (
    LABELED_PREFIX,
    REVIEW_PREFIX,
    check_dataset_name,
    prediction_key,
    review_json_key,
    review_key,
    review_sr_key,
)
from medimage.core.objects import ObjectHead
from medimage.core.presets import LabelRule, Preset
from medimage.results.finding import Verdict


class ReviewProblem(MedimageError):
    """A review command that cannot be done as asked (unknown item, a label the dataset has no rule for)."""

    code = "review"


class ReviewBucket(Protocol):
    """What the review queue needs of the data bucket."""

    bucket: str

    def head(self, key: str) -> ObjectHead | None: ...
    def get_json(self, key: str) -> Any | None: ...
    def put_json(self, key: str, value: Any) -> None: ...
    def get_bytes(self, key: str) -> bytes | None: ...
    def put_bytes(self, key: str, data: bytes, content_type: str = ...) -> None: ...
    def copy(self, source_key: str, dest_key: str) -> None: ...
    def delete(self, key: str) -> None: ...
    def list_keys(self, prefix: str) -> Iterator[str]: ...


@dataclass(frozen=True)
class ReviewItem:
    """One image waiting for a clinician; the prediction fields are None when its JSON is missing."""

    dataset: str
    name: str  # below review/<dataset>/
    key: str
    label: str | None
    confidence: float | None
    review_reason: str | None
    model_version: str | None
    predicted_at: str | None
    source_key: str | None
    probabilities: dict[str, float] | None = None

    @classmethod
    def from_record(cls, dataset: str, name: str, record: dict[str, Any] | None) -> ReviewItem:
        doc = record or {}
        confidence = doc.get("confidence")
        probabilities = doc.get("probabilities")
        return cls(
            dataset=dataset,
            name=name,
            key=review_key(dataset, name),
            label=doc.get("label"),
            confidence=float(confidence) if isinstance(confidence, int | float) else None,
            review_reason=doc.get("review_reason"),
            model_version=doc.get("model_version"),
            predicted_at=doc.get("predicted_at"),
            source_key=doc.get("key"),
            probabilities=(
                {str(k): float(v) for k, v in probabilities.items() if isinstance(v, int | float)}
                if isinstance(probabilities, dict)
                else None
            ),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "name": self.name,
            "key": self.key,
            "label": self.label,
            "confidence": self.confidence,
            "review_reason": self.review_reason,
            "model_version": self.model_version,
            "predicted_at": self.predicted_at,
            "source_key": self.source_key,
            "probabilities": self.probabilities,
        }


@dataclass(frozen=True)
class Labelled:
    """The outcome of `ReviewQueue.label`."""

    dataset: str
    name: str
    label: str
    labeled_key: str
    model_label: str | None
    reviewer: str
    verdict: str  # accepted | modified

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "name": self.name,
            "label": self.label,
            "labeled_key": self.labeled_key,
            "model_label": self.model_label,
            "reviewer": self.reviewer,
            "verdict": self.verdict,
        }


# ---------------------------------------------------------------- where a reviewed image goes (pure)


def _check_label_folder(label: str) -> str:
    if not label or label in {".", ".."} or "/" in label or label != label.strip():
        raise ReviewProblem(f"'{label}' cannot be a label folder (no '/', not empty)", "bad_label")
    return label


def _renamed(filename: str, rule: LabelRule, rivals: list[LabelRule]) -> str:
    """``filename`` made to match ``rule`` and no rival rule of its folder: a rival's token is replaced by
    the rule's own (``bacteria`` -> ``virus``, so the patient id in front is kept), and a missing token is
    added before the extension."""
    path = PurePosixPath(filename)
    stem, suffix = (path.stem, path.suffix) if path.suffix else (filename, "")
    wanted = rule.filename_contains or ""
    for rival in rivals:
        token = rival.filename_contains
        if token and token.casefold() != wanted.casefold():
            stem = re.sub(re.escape(token), wanted, stem, flags=re.IGNORECASE)
    if wanted and wanted.casefold() not in stem.casefold():
        stem = f"{stem}_{wanted}"
    return stem + suffix


def labeled_key_for(preset: Preset, dataset: str, name: str, label: str) -> str:
    """``incoming/labeled/<dataset>/<folder>/<file>`` that ``preset`` reads as ``label`` (the file keeps
    the name of the reviewed image where the rules allow); `ReviewProblem` ``unknown_label`` when the
    preset has no such class."""
    check_dataset_name(dataset)
    filename = PurePosixPath(name).name
    if preset.folder_is_label:
        return f"{LABELED_PREFIX}{dataset}/{_check_label_folder(label)}/{filename}"
    classes = preset.classes or tuple(dict.fromkeys(r.label for r in preset.label_rules))
    if label not in classes:
        raise ReviewProblem(
            f"'{label}' is not a class of dataset '{dataset}' (preset {preset.name}): "
            f"use one of {', '.join(classes)}",
            "unknown_label",
        )
    for rule in (r for r in preset.label_rules if r.label == label):
        rivals = [r for r in preset.label_rules if r.folder.casefold() == rule.folder.casefold()]
        candidate = _renamed(filename, rule, rivals)
        try:
            if preset.label_for(rule.folder, candidate) == label:
                return f"{LABELED_PREFIX}{dataset}/{rule.folder}/{candidate}"
        except MedimageError:
            continue
    raise ReviewProblem(
        f"no file name under preset {preset.name}'s rules gives '{filename}' the label '{label}'",
        "unknown_label",
    )


def _with_content_suffix(key: str, etag: str) -> str:
    """A sibling key for a different image that happens to have the target's name."""
    path = PurePosixPath(key)
    return str(path.with_name(f"{path.stem}-r{etag[:8]}{path.suffix}"))


def _utcnow() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# ---------------------------------------------------------------- the queue


class ReviewQueue:
    def __init__(self, store: ReviewBucket, clock: Callable[[], str] = _utcnow) -> None:
        self.store = store
        self._clock = clock

    @staticmethod
    def name_of(dataset: str, key_or_name: str) -> str:
        """The item name from ``review/<dataset>/<name>`` or ``<name>`` as a person types it."""
        prefix = f"{REVIEW_PREFIX}{check_dataset_name(dataset)}/"
        name = key_or_name[len(prefix) :] if key_or_name.startswith(prefix) else key_or_name
        if not name or name.endswith("/"):
            raise ReviewProblem(f"'{key_or_name}' names no review item", "not_in_review")
        return name

    def list(self, dataset: str) -> list[ReviewItem]:
        """The images waiting in ``review/<dataset>/``, least confident first."""
        prefix = f"{REVIEW_PREFIX}{check_dataset_name(dataset)}/"
        keys = set(self.store.list_keys(prefix))
        images = sorted(k for k in keys if not (k.endswith(".json") and k[: -len(".json")] in keys))
        items = [
            ReviewItem.from_record(dataset, key[len(prefix) :], self.store.get_json(key + ".json"))
            for key in images
        ]
        return sorted(items, key=lambda i: (i.confidence if i.confidence is not None else -1.0, i.name))

    def show(self, dataset: str, key_or_name: str) -> dict[str, Any]:
        """The prediction JSON of one item, with where the image is and its size."""
        name = self.name_of(dataset, key_or_name)
        head = self._queued(dataset, name)
        record = self.store.get_json(review_json_key(dataset, name)) or {}
        return {**record, "review_key": review_key(dataset, name), "image_bytes": head.size}

    def image(self, dataset: str, key_or_name: str) -> tuple[bytes, ReviewItem]:
        """The queued image's bytes and its item."""
        name = self.name_of(dataset, key_or_name)
        self._queued(dataset, name)
        data = self.store.get_bytes(review_key(dataset, name))
        if data is None:  # labelled in between
            raise self._not_in_review(dataset, name)
        record = self.store.get_json(review_json_key(dataset, name))
        return data, ReviewItem.from_record(dataset, name, record)

    def _queued(self, dataset: str, name: str) -> ObjectHead:
        """The head of a queued image; ``not_in_review`` for a name that is not one (a result JSON beside
        an image is not an image)."""
        if name.endswith(".json") and self.store.head(review_key(dataset, name[: -len(".json")])):
            raise self._not_in_review(dataset, name)
        head = self.store.head(review_key(dataset, name))
        if head is None:
            raise self._not_in_review(dataset, name)
        return head

    def label(self, dataset: str, key_or_name: str, label: str, preset: Preset, *, reviewer: str) -> Labelled:
        """Move one reviewed image into the training data under ``label``: copy, check the copy, note the
        verdict (accepted or modified, and by whom) in the prediction result and, when the AI's result has
        an SR, in a new SR that refers to it, then clear the item from ``review/``. A verdict names its
        reviewer: an empty one is `ReviewProblem` ``no_reviewer``, before anything moves."""
        if not reviewer.strip():
            raise ReviewProblem("a verdict needs its reviewer: none was given", "no_reviewer")
        name = self.name_of(dataset, key_or_name)
        image_key = review_key(dataset, name)
        target = labeled_key_for(preset, dataset, name, label)  # a bad label fails before anything moves
        source = self._queued(dataset, name)
        existing = self.store.head(target)
        if existing is not None and existing != source:  # another image already has that name
            target = _with_content_suffix(target, source.etag)
            existing = self.store.head(target)
        if existing != source:
            self.store.copy(image_key, target)
            stored = self.store.head(target)
            if stored is None or stored.size != source.size:
                raise ReviewProblem(
                    f"the copy at {target} is not the reviewed image; {image_key} stays in review",
                    "copy_failed",
                )
        record = self.store.get_json(review_json_key(dataset, name)) or {}
        model_label = str(record.get("label") or "")
        reviewed = Verdict(label, model_label, reviewer, self._clock())
        verdict = {
            "label": label,
            "labeled_key": target,
            "reviewed_at": reviewed.reviewed_at,
            "reviewer": reviewer,
            "verdict": "accepted" if reviewed.accepted else "modified",
            "sr_key": None,
        }
        source_key = record.get("key")
        if isinstance(source_key, str):
            result_key = prediction_key(dataset, source_key)
            result = self.store.get_json(result_key)
            if isinstance(result, dict):
                verdict["sr_key"] = self._write_review_sr(dataset, source_key, result, reviewed)
                self.store.put_json(result_key, {**result, "review": verdict})
        self.store.delete(review_json_key(dataset, name))
        self.store.delete(image_key)  # last: until here a rerun finds the item and finishes the move
        return Labelled(dataset, name, label, target, record.get("label"), reviewer, str(verdict["verdict"]))

    def _write_review_sr(
        self, dataset: str, source_key: str, result: dict[str, Any], verdict: Verdict
    ) -> str | None:
        """The verdict as an SR that refers to the AI's SR; None when the AI's result has no SR (a PNG or
        JPEG source). Imported here: highdicom is needed only when there is an SR to answer."""
        ai_sr_key = (result.get("results") or {}).get("sr_key")
        ai_sr = self.store.get_bytes(ai_sr_key) if isinstance(ai_sr_key, str) else None
        if ai_sr is None:
            return None
        from medimage.results.sr import review_report
        from medimage.results.writer import DICOM_CONTENT_TYPE

        key = review_sr_key(dataset, source_key)
        self.store.put_bytes(key, review_report(ai_sr, verdict), DICOM_CONTENT_TYPE)
        return key

    def _not_in_review(self, dataset: str, name: str) -> ReviewProblem:
        return ReviewProblem(
            f"{review_key(dataset, name)} is not in the review queue (already labelled? "
            f"list the queue of dataset {dataset} again)",
            "not_in_review",
        )
