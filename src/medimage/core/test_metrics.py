"""A model's figures on one test manifest, as the gate judges them: read from ``evaluation.json``, stored
in gate.json and the registry, each with its 95 % Wilson interval (`medimage.core.evidence`).

Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from medimage.core import evidence
from medimage.core.evidence import Interval


@dataclass(frozen=True)
class TestMetrics:
    """A model's numbers on one test manifest (the ``test`` part of ``evaluation.json``).

    ``support`` counts each class's test images (the denominators of the recalls); ``truth`` and
    ``predicted`` are the class indices of each test image in the manifest's order, when the evaluation
    recorded them, for the paired comparison. Neither list goes into ``to_dict`` (the registry keeps
    figures, not thousands of predictions)."""

    __test__ = False  # not a pytest test class

    manifest_version: str
    accuracy: float
    recall: dict[str, float | None]
    labels: tuple[str, ...]
    n: int
    # Share of the images labelled without review at the model's review threshold (None: no threshold).
    coverage: float | None = None
    support: dict[str, int] = field(default_factory=dict)
    truth: tuple[int, ...] | None = field(default=None, compare=False, repr=False)
    predicted: tuple[int, ...] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_evaluation(cls, split: dict[str, Any], manifest_version: str) -> TestMetrics:
        """From one split of ``evaluation.json``: ``{"n", "accuracy", "per_class", "labels", ...}``."""
        try:
            per_class = split["per_class"]
            accuracy = float(split["accuracy"])
            n = int(split["n"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"evaluation metrics lack n/accuracy/per_class: {exc}") from None
        labels = tuple(split.get("labels") or per_class)
        recall = {label: _optional_float(per_class.get(label, {}).get("recall")) for label in labels}
        support = {
            label: int(per_class[label]["support"])
            for label in labels
            if per_class.get(label, {}).get("support") is not None
        }
        coverage = _optional_float((split.get("selective") or {}).get("coverage"))
        truth, predicted = split.get("truth"), split.get("predicted")
        if truth is None or predicted is None:
            truth = predicted = None
        elif not len(truth) == len(predicted) == n:
            raise ValueError(
                f"evaluation lists {len(truth)} labels and {len(predicted)} predictions for n={n}"
            )
        return cls(
            manifest_version,
            accuracy,
            recall,
            labels,
            n,
            coverage,
            support,
            None if truth is None else tuple(int(t) for t in truth),
            None if predicted is None else tuple(int(p) for p in predicted),
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TestMetrics:
        """The inverse of ``to_dict`` (as stored in gate.json and the registry's entries)."""
        return cls(
            str(data["manifest_version"]),
            float(data["accuracy"]),
            {k: _optional_float(v) for k, v in data["recall"].items()},
            tuple(data["labels"]),
            int(data["n"]),
            _optional_float(data.get("coverage")),
            {k: int(v) for k, v in (data.get("support") or {}).items()},
        )

    def to_dict(self) -> dict[str, Any]:
        metrics: dict[str, Any] = {
            "manifest_version": self.manifest_version,
            "accuracy": self.accuracy,
            "recall": dict(self.recall),
            "labels": list(self.labels),
            "n": self.n,
        }
        if self.coverage is not None:
            metrics["coverage"] = self.coverage
        if self.support:
            metrics["support"] = dict(self.support)
        return metrics

    @property
    def has_predictions(self) -> bool:
        return self.truth is not None and self.predicted is not None

    def intervals(self) -> dict[str, Any]:
        """Every figure with its 95 % Wilson interval: accuracy, each class's recall (where its test images
        are counted) and coverage."""
        recall = {
            label: rate_interval(rate, self.support[label]).to_dict()
            for label, rate in self.recall.items()
            if rate is not None and self.support.get(label)
        }
        if self.n <= 0:
            return {"recall": recall}
        accuracy = rate_interval(self.accuracy, self.n).to_dict()
        figures: dict[str, Any] = {"accuracy": accuracy, "recall": recall}
        if self.coverage is not None:
            figures["coverage"] = rate_interval(self.coverage, self.n).to_dict()
        return figures


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


def rate_interval(rate: float, n: int) -> Interval:
    """The Wilson interval of a figure stored as a rounded rate over ``n`` images."""
    return evidence.wilson(min(n, max(0, round(rate * n))), n)
