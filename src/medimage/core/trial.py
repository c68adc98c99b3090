"""A silent trial: the pairs of answers production (the champion) and the candidate gave on the same
images, and the scorecard a person reads before ending the trial.

Serving records one `TrialPair` per image the candidate also classified (``medimage.inference.trial``):
both labels, confidences, review decisions and latencies, where it came from (``api`` or ``s3``) and,
for a dropped image, its key in the bucket, so the pair can be joined with a reviewer's verdict on it. A
pair holds no pixels, no DICOM attributes and no patient data; an API pair has no key at all.

Pairs are stored as JSON Lines objects under ``trials/<dataset>/<candidate>/pairs/``; the scorecard of a
trial is ``trials/<dataset>/<candidate>/scorecard.json``.

Pure: the standard library only.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from medimage.core.evidence import wilson
from medimage.core.layout import check_dataset_name

TRIALS_PREFIX = "trials/"
SOURCES = ("api", "s3")


def trial_prefix(dataset: str, candidate_version: str) -> str:
    return f"{TRIALS_PREFIX}{check_dataset_name(dataset)}/{candidate_version}/"


def pairs_prefix(dataset: str, candidate_version: str) -> str:
    return trial_prefix(dataset, candidate_version) + "pairs/"


def scorecard_key(dataset: str, candidate_version: str) -> str:
    return trial_prefix(dataset, candidate_version) + "scorecard.json"


@dataclass(frozen=True)
class Answer:
    """What one model said about one image, as far as the trial compares it."""

    version: str
    label: str
    confidence: float
    needs_review: bool
    review_reason: str | None
    latency_ms: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "label": self.label,
            "confidence": round(self.confidence, 6),
            "needs_review": self.needs_review,
            "review_reason": self.review_reason,
            "latency_ms": round(self.latency_ms, 3),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Answer:
        return cls(
            version=str(data["version"]),
            label=str(data["label"]),
            confidence=float(data["confidence"]),
            needs_review=bool(data["needs_review"]),
            review_reason=data.get("review_reason"),
            latency_ms=float(data["latency_ms"]),
        )


@dataclass(frozen=True)
class TrialPair:
    dataset: str
    source: str  # api | s3
    at: str
    champion: Answer
    candidate: Answer
    image_key: str | None = None  # the dropped image's key (s3 only): joins a reviewer's verdict

    @property
    def agree(self) -> bool:
        return self.champion.label == self.candidate.label

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "source": self.source,
            "at": self.at,
            "image_key": self.image_key,
            "agree": self.agree,
            "champion": self.champion.to_dict(),
            "candidate": self.candidate.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrialPair:
        return cls(
            dataset=str(data["dataset"]),
            source=str(data["source"]),
            at=str(data["at"]),
            champion=Answer.from_dict(data["champion"]),
            candidate=Answer.from_dict(data["candidate"]),
            image_key=data.get("image_key"),
        )


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0..100): a value that was measured, easy to recount by hand."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def _rate(count: int, n: int) -> dict[str, Any]:
    if n == 0:
        return {"count": 0, "n": 0, "rate": None, "low": None, "high": None}
    interval = wilson(count, n)
    return {
        "count": count,
        "n": n,
        "rate": round(interval.rate, 6),
        "low": round(interval.low, 6),
        "high": round(interval.high, 6),
    }


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 6) if values else None


def _latency(values: list[float]) -> dict[str, float | None]:
    return {"p50": percentile(values, 50), "p95": percentile(values, 95)}


def scorecard(
    dataset: str, candidate_version: str, pairs: Iterable[TrialPair], verdicts: Mapping[str, str]
) -> dict[str, Any]:
    """The trial's figures over ``pairs``; ``verdicts`` maps an image key to the label a reviewer gave
    it through the review queue (only images production sent to review can have one).

    - ``agreement``: the share of images both models gave the same label (Wilson 95 % interval), and
      ``disagreements``: how often each ``champion label -> candidate label`` change happened;
    - ``review``: how often each model would have sent the image to a clinician;
    - ``confidence``: each model's mean top-class confidence and the mean shift (candidate - champion);
    - ``latency_ms``: nearest-rank p50 and p95 of each (champion: decode + inference as answered;
      candidate: its inference, plus a decode of its own when its input differs);
    - ``reviewed``: on the images a reviewer labelled, each model's accuracy and the images only one of
      them got right."""
    pairs = [p for p in pairs if p.candidate.version == candidate_version]
    n = len(pairs)
    champion_versions = sorted({p.champion.version for p in pairs})
    agree = sum(p.agree for p in pairs)
    changes = Counter(f"{p.champion.label} -> {p.candidate.label}" for p in pairs if not p.agree)
    reviewed = [(p, verdicts[p.image_key]) for p in pairs if p.image_key and p.image_key in verdicts]
    champion_right = sum(p.champion.label == truth for p, truth in reviewed)
    candidate_right = sum(p.candidate.label == truth for p, truth in reviewed)
    only_candidate = sum(p.candidate.label == truth != p.champion.label for p, truth in reviewed)
    only_champion = sum(p.champion.label == truth != p.candidate.label for p, truth in reviewed)
    return {
        "dataset": dataset,
        "candidate_version": candidate_version,
        "champion_versions": champion_versions,
        "pairs": n,
        "by_source": {s: sum(p.source == s for p in pairs) for s in SOURCES},
        "first_at": min((p.at for p in pairs), default=None),
        "last_at": max((p.at for p in pairs), default=None),
        "agreement": _rate(agree, n),
        "disagreements": dict(sorted(changes.items(), key=lambda kv: (-kv[1], kv[0]))),
        "review": {
            "champion": _rate(sum(p.champion.needs_review for p in pairs), n),
            "candidate": _rate(sum(p.candidate.needs_review for p in pairs), n),
            "both": sum(p.champion.needs_review and p.candidate.needs_review for p in pairs),
            "champion_only": sum(p.champion.needs_review and not p.candidate.needs_review for p in pairs),
            "candidate_only": sum(p.candidate.needs_review and not p.champion.needs_review for p in pairs),
        },
        "confidence": {
            "champion_mean": _mean([p.champion.confidence for p in pairs]),
            "candidate_mean": _mean([p.candidate.confidence for p in pairs]),
            "mean_shift": _mean([p.candidate.confidence - p.champion.confidence for p in pairs]),
        },
        "latency_ms": {
            "champion": _latency([p.champion.latency_ms for p in pairs]),
            "candidate": _latency([p.candidate.latency_ms for p in pairs]),
        },
        "reviewed": {
            "images": len(reviewed),
            "champion_accuracy": _rate(champion_right, len(reviewed)),
            "candidate_accuracy": _rate(candidate_right, len(reviewed)),
            "candidate_only_right": only_candidate,
            "champion_only_right": only_champion,
            "note": "images production sent to review and a reviewer labelled: its hardest cases, "
            "not a random sample",
        },
    }
