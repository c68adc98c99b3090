"""The promotion gate: may a freshly trained model (the challenger) replace the production model?

A challenger passes only if every check passes:

- ``min_accuracy``: its test accuracy is at least the preset's ``min_accuracy`` (or the deployment's
  override);
- ``min_recall:<class>``: the recall of every class with a floor is at least that floor. A class whose
  recall is undefined (no test images) fails its floor: a floor that cannot be verified is not met,
  because missing, say, pneumonia cases is the error that matters most clinically;
- ``min_coverage`` (only when the preset sets one): the share of test images it labels without review, at
  its own review threshold, is at least the floor. A model that sends nearly everything to review is no
  help to an overwhelmed clinic, and a model without a review threshold cannot show its coverage;
- ``champion``: its test accuracy is not lower than the production model's (the champion's) on the same
  test manifest. Ties pass, so retraining on unchanged data can be promoted; the first model of a
  dataset has no champion. A champion whose classes differ cannot be compared (the class set of the
  dataset changed) and is reported, not held against the challenger.

Pure: no I/O. The gate service gathers the numbers (from ``evaluation.json`` and the registry).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from medimage.core.presets import Preset

# Accuracies are rounded to 6 decimals in evaluation.json; compare with a tolerance below that.
_TOLERANCE = 1e-9


@dataclass(frozen=True)
class GateConfig:
    min_accuracy: float
    min_recall: dict[str, float] = field(default_factory=dict)
    min_coverage: float | None = None

    @classmethod
    def from_preset(cls, preset: Preset, min_accuracy_override: float | None = None) -> GateConfig:
        """The preset's thresholds; a deployment may override ``min_accuracy`` (template parameter)."""
        min_accuracy = preset.gate.min_accuracy
        if min_accuracy_override is not None:
            if not 0.0 <= min_accuracy_override <= 1.0 or math.isnan(min_accuracy_override):
                raise ValueError(f"min_accuracy override must lie in 0..1, got {min_accuracy_override}")
            min_accuracy = min_accuracy_override
        return cls(
            min_accuracy=min_accuracy,
            min_recall=dict(preset.gate.min_recall),
            min_coverage=preset.gate.min_coverage,
        )

    def to_dict(self) -> dict[str, Any]:
        thresholds: dict[str, Any] = {"min_accuracy": self.min_accuracy, "min_recall": dict(self.min_recall)}
        if self.min_coverage is not None:
            thresholds["min_coverage"] = self.min_coverage
        return thresholds


@dataclass(frozen=True)
class TestMetrics:
    """A model's numbers on one test manifest (the ``test`` part of ``evaluation.json``)."""

    __test__ = False  # not a pytest test class

    manifest_version: str
    accuracy: float
    recall: dict[str, float | None]
    labels: tuple[str, ...]
    n: int
    # Share of the images labelled without review at the model's review threshold (None: no threshold).
    coverage: float | None = None

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
        coverage = _optional_float((split.get("selective") or {}).get("coverage"))
        return cls(manifest_version, accuracy, recall, labels, n, coverage)

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
        return metrics


@dataclass(frozen=True)
class Champion:
    """The production model, with its numbers on the challenger's test manifest."""

    version: str
    metrics: TestMetrics


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"check": self.name, "passed": self.passed, "detail": self.detail}


@dataclass(frozen=True)
class GateDecision:
    passed: bool
    checks: tuple[Check, ...]
    metrics: TestMetrics
    config: GateConfig
    champion: Champion | None

    @property
    def reasons(self) -> list[str]:
        """Why the challenger was rejected (empty when it passed)."""
        return [c.detail for c in self.checks if not c.passed]

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "reasons": self.reasons,
            "checks": [c.to_dict() for c in self.checks],
            "metrics": self.metrics.to_dict(),
            "thresholds": self.config.to_dict(),
            "champion": None
            if self.champion is None
            else {"version": self.champion.version, "metrics": self.champion.metrics.to_dict()},
        }


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


def decide(challenger: TestMetrics, config: GateConfig, champion: Champion | None) -> GateDecision:
    """Run every check (all of them, so the decision explains itself) and combine them."""
    checks = [_accuracy_check(challenger, config)]
    checks += [_recall_check(challenger, label, floor) for label, floor in sorted(config.min_recall.items())]
    if config.min_coverage is not None:
        checks.append(_coverage_check(challenger, config.min_coverage))
    checks.append(_champion_check(challenger, champion))
    return GateDecision(all(c.passed for c in checks), tuple(checks), challenger, config, champion)


def _accuracy_check(challenger: TestMetrics, config: GateConfig) -> Check:
    ok = challenger.accuracy + _TOLERANCE >= config.min_accuracy
    relation = ">=" if ok else "<"
    return Check(
        "min_accuracy",
        ok,
        f"test accuracy {challenger.accuracy:.4f} {relation} "
        f"min_accuracy {config.min_accuracy:.4f} (n={challenger.n})",
    )


def _recall_check(challenger: TestMetrics, label: str, floor: float) -> Check:
    recall = challenger.recall.get(label)
    name = f"min_recall:{label}"
    if recall is None:
        return Check(
            name,
            False,
            f"recall of '{label}' is undefined (no '{label}' images in the test "
            f"split), so its floor {floor:.4f} cannot be verified",
        )
    ok = recall + _TOLERANCE >= floor
    relation = ">=" if ok else "<"
    return Check(name, ok, f"recall of '{label}' {recall:.4f} {relation} floor {floor:.4f}")


def _coverage_check(challenger: TestMetrics, floor: float) -> Check:
    if challenger.coverage is None:
        return Check(
            "min_coverage",
            False,
            f"the model has no review threshold, so its coverage cannot be checked against {floor:.4f}",
        )
    ok = challenger.coverage + _TOLERANCE >= floor
    relation = ">=" if ok else "<"
    return Check(
        "min_coverage",
        ok,
        f"share labelled without review {challenger.coverage:.4f} {relation} min_coverage {floor:.4f}",
    )


def _champion_check(challenger: TestMetrics, champion: Champion | None) -> Check:
    if champion is None:
        return Check("champion", True, "no production model yet: nothing to compare against")
    theirs = champion.metrics
    if theirs.labels != challenger.labels:
        return Check(
            "champion",
            True,
            f"production model {champion.version} has classes "
            f"{list(theirs.labels)}, not {list(challenger.labels)}: "
            "not comparable, thresholds only",
        )
    if theirs.manifest_version != challenger.manifest_version or theirs.n != challenger.n:
        raise ValueError(
            f"the champion's metrics are on test manifest {theirs.manifest_version} (n={theirs.n}), the "
            f"challenger's on {challenger.manifest_version} (n={challenger.n}): compare on the same one"
        )
    ok = challenger.accuracy + _TOLERANCE >= theirs.accuracy
    relation = "not worse than" if ok else "worse than"
    return Check(
        "champion",
        ok,
        f"test accuracy {challenger.accuracy:.4f} is {relation} production model "
        f"{champion.version} ({theirs.accuracy:.4f}) on manifest "
        f"{challenger.manifest_version}",
    )
