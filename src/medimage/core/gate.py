"""The promotion gate: may a freshly trained model (the challenger) replace the production model?

A test split of a few hundred images cannot tell apart figures a few points apart, so every check has
three outcomes, ``pass``, ``fail`` and ``insufficient_evidence``, judged with 95 % intervals
(`medimage.core.evidence`). The checks:

- ``min_accuracy``: its test accuracy against the preset's ``min_accuracy`` (or the deployment's
  override);
- ``min_recall:<class>``: the recall of every class with a floor, on that class's test images;
- ``min_coverage`` (only when the preset sets one): the share of test images it labels without review, at
  its own review threshold. A model that sends nearly everything to review is no help to an overwhelmed
  clinic, and a model without a review threshold cannot show its coverage (``fail``);
- ``champion``: its accuracy against the production model's (the champion's) on the same test images.
  The first model of a dataset has no champion; a champion whose classes differ (the class set of the
  dataset changed) is reported, not held against the challenger.

The rule. A floor check passes when the observed figure is at or above the floor (``evidence`` says
whether the interval's lower bound clears it too, or only the point estimate); it fails when the whole
Wilson interval lies under the floor; otherwise (under the floor, but the interval reaches it) the split
cannot tell. A class without test images cannot show its recall: ``insufficient_evidence``, because
missing, say, pneumonia cases is the error that matters most clinically. The champion check compares both
models image by image (McNemar's exact test on the images only one of them gets right): it passes when the
challenger is right at least as often (ties pass, so retraining on unchanged data can be promoted), fails
when it is right less often and the difference is significant (p < 0.05), and otherwise cannot tell.
Without per-image results for both models (models trained before they were recorded) it compares the
accuracies alone: lower fails, as it always did.

The decision: ``fail`` if any check fails; else ``insufficient_evidence`` if any check cannot tell, with
``images_needed``, the test-split size at which every undecided check would be decided if the observed
rates held (per class too, ``class_images_needed``, where a class floor is undecided); else ``pass``. Only
``pass`` promotes. A floor cleared on the point estimate alone passes because the champion check still
guards production: a challenger is never promoted over a model that did better on the same images.

Pure: no I/O. The gate service gathers the numbers (from ``evaluation.json`` and the registry).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from medimage.core import evidence
from medimage.core.evidence import PairedComparison
from medimage.core.presets import Preset
from medimage.core.test_metrics import TestMetrics, rate_interval

# Accuracies are rounded to 6 decimals in evaluation.json; compare with a tolerance below that.
_TOLERANCE = 1e-9

PASS = "pass"
FAIL = "fail"
INSUFFICIENT_EVIDENCE = "insufficient_evidence"


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
class Champion:
    """The production model, with its numbers on the challenger's test manifest."""

    version: str
    metrics: TestMetrics


@dataclass(frozen=True)
class Check:
    """One check's outcome (``pass``, ``fail`` or ``insufficient_evidence``), why, and its evidence:
    the interval or the paired comparison, and, when undecided, the test-split size that would decide."""

    name: str
    outcome: str
    detail: str
    evidence: dict[str, Any] = field(default_factory=dict)
    images_needed: int | None = None

    @property
    def passed(self) -> bool:
        return self.outcome == PASS

    def to_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = {
            "check": self.name,
            "passed": self.passed,
            "outcome": self.outcome,
            "detail": self.detail,
        }
        if self.evidence:
            result["evidence"] = self.evidence
        if self.images_needed is not None:
            result["images_needed"] = self.images_needed
        return result


@dataclass(frozen=True)
class GateDecision:
    outcome: str
    checks: tuple[Check, ...]
    metrics: TestMetrics
    config: GateConfig
    champion: Champion | None
    paired: PairedComparison | None = None

    @property
    def passed(self) -> bool:
        return self.outcome == PASS

    @property
    def reasons(self) -> list[str]:
        """Why the challenger was not promoted (empty when it passed)."""
        return [c.detail for c in self.checks if not c.passed]

    @property
    def images_needed(self) -> int | None:
        """The test-split size that would decide every undecided check (None unless undecided)."""
        if self.outcome != INSUFFICIENT_EVIDENCE:
            return None
        needed = [c.images_needed for c in self.checks if c.outcome == INSUFFICIENT_EVIDENCE]
        return max((n for n in needed if n is not None), default=None)

    @property
    def class_images_needed(self) -> dict[str, int]:
        """Test images of each class whose recall floor is undecided, that would decide it."""
        if self.outcome != INSUFFICIENT_EVIDENCE:
            return {}
        return {
            c.name.split(":", 1)[1]: c.evidence["class_images_needed"]
            for c in self.checks
            if c.outcome == INSUFFICIENT_EVIDENCE and "class_images_needed" in c.evidence
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "outcome": self.outcome,
            "images_needed": self.images_needed,
            "class_images_needed": self.class_images_needed,
            "reasons": self.reasons,
            "checks": [c.to_dict() for c in self.checks],
            "metrics": self.metrics.to_dict(),
            "confidence": evidence.CONFIDENCE,
            "intervals": self.metrics.intervals(),
            "paired": None if self.paired is None else self.paired.to_dict(),
            "thresholds": self.config.to_dict(),
            "champion": None
            if self.champion is None
            else {"version": self.champion.version, "metrics": self.champion.metrics.to_dict()},
        }


def verdict(result: dict[str, Any]) -> str:
    """One word for a gate output or gate.json, for logs: PASSED, REJECTED or INSUFFICIENT_EVIDENCE with
    the test images it would need (an output from before ``outcome`` existed is passed or rejected)."""
    if result.get("outcome") == INSUFFICIENT_EVIDENCE:
        needed = result.get("images_needed")
        return "INSUFFICIENT_EVIDENCE" + (f" (about {needed} test images needed)" if needed else "")
    return "PASSED" if result.get("passed") else "REJECTED"


def decide(challenger: TestMetrics, config: GateConfig, champion: Champion | None) -> GateDecision:
    """Run every check (all of them, so the decision explains itself) and combine them: any ``fail``
    fails, else any ``insufficient_evidence`` leaves it undecided, else it passes."""
    checks = [_accuracy_check(challenger, config)]
    checks += [_recall_check(challenger, label, floor) for label, floor in sorted(config.min_recall.items())]
    if config.min_coverage is not None:
        checks.append(_coverage_check(challenger, config.min_coverage))
    paired = _paired(challenger, champion)
    checks.append(_champion_check(challenger, champion, paired))
    outcomes = {c.outcome for c in checks}
    if FAIL in outcomes:
        outcome = FAIL
    elif INSUFFICIENT_EVIDENCE in outcomes:
        outcome = INSUFFICIENT_EVIDENCE
    else:
        outcome = PASS
    return GateDecision(outcome, tuple(checks), challenger, config, champion, paired)


def _floor_check(name: str, figure: str, rate: float, n: int, floor: float, test_n: int) -> Check:
    """A figure measured on ``n`` images against its floor, by the rule in the module docstring.
    ``test_n`` is the whole test split, to scale a class's images needed up to a split size."""
    if n <= 0:
        # No count to judge it by (the trainer refuses an empty test split): the figure alone decides.
        ok = rate + _TOLERANCE >= floor
        relation = ">=" if ok else "<"
        return Check(
            name, PASS if ok else FAIL, f"{figure} {rate:.4f} {relation} {name_of(name)} {floor:.4f}"
        )
    interval = rate_interval(rate, n)
    span = f"95% interval {interval.low:.4f}-{interval.high:.4f} on {n} images"
    facts: dict[str, Any] = {"interval": interval.to_dict(), "floor": floor}
    if rate + _TOLERANCE >= floor:
        with_evidence = interval.low + _TOLERANCE >= floor
        how = "its whole interval clears it" if with_evidence else "on the point estimate only"
        facts["cleared_with_evidence"] = with_evidence
        return Check(name, PASS, f"{figure} {rate:.4f} >= {name_of(name)} {floor:.4f} ({span}; {how})", facts)
    if interval.high < floor:
        return Check(
            name, FAIL, f"{figure} {rate:.4f} < {name_of(name)} {floor:.4f}, as is all of its {span}", facts
        )
    needed = evidence.n_to_fall_below(rate, floor)
    split_needed = min(evidence.MAX_IMAGES, math.ceil(needed * test_n / n))
    if name.startswith("min_recall:"):
        facts["class_images_needed"] = needed
        enough = f"{needed} '{name.split(':', 1)[1]}' test images (a test split of about {split_needed})"
    else:
        enough = f"a test split of {split_needed} images"
    return Check(
        name,
        INSUFFICIENT_EVIDENCE,
        f"{figure} {rate:.4f} < {name_of(name)} {floor:.4f}, but its {span} reaches the floor: the test "
        f"split cannot tell; at this rate {enough} would",
        facts,
        split_needed,
    )


def name_of(check: str) -> str:
    """How a floor is named in a reason: ``floor`` for a class's recall, else the threshold's name."""
    return "floor" if check.startswith("min_recall:") else check


def _accuracy_check(challenger: TestMetrics, config: GateConfig) -> Check:
    return _floor_check(
        "min_accuracy", "test accuracy", challenger.accuracy, challenger.n, config.min_accuracy, challenger.n
    )


def _recall_check(challenger: TestMetrics, label: str, floor: float) -> Check:
    recall = challenger.recall.get(label)
    name = f"min_recall:{label}"
    support = challenger.support.get(label)
    if recall is None or support == 0:
        needed = evidence.n_to_clear(1.0, floor) if floor < 1.0 else evidence.MAX_IMAGES
        return Check(
            name,
            INSUFFICIENT_EVIDENCE,
            f"recall of '{label}' is undefined (no '{label}' images in the test split), so its floor "
            f"{floor:.4f} cannot be verified; even a perfect recall needs {needed} such test images",
            {"floor": floor, "class_images_needed": needed},
            challenger.n + needed,
        )
    if support is None:
        # Counts not recorded (older metrics): the point estimate alone, as the gate always did.
        ok = recall + _TOLERANCE >= floor
        relation = ">=" if ok else "<"
        return Check(
            name, PASS if ok else FAIL, f"recall of '{label}' {recall:.4f} {relation} floor {floor:.4f}"
        )
    return _floor_check(name, f"recall of '{label}'", recall, support, floor, challenger.n)


def _coverage_check(challenger: TestMetrics, floor: float) -> Check:
    if challenger.coverage is None:
        return Check(
            "min_coverage",
            FAIL,
            f"the model has no review threshold, so its coverage cannot be checked against {floor:.4f}",
        )
    return _floor_check(
        "min_coverage",
        "share labelled without review",
        challenger.coverage,
        challenger.n,
        floor,
        challenger.n,
    )


def _paired(challenger: TestMetrics, champion: Champion | None) -> PairedComparison | None:
    """Both models' predictions on the same images, when both recorded them and the classes match."""
    if champion is None or champion.metrics.labels != challenger.labels:
        return None
    theirs = champion.metrics
    if not (challenger.has_predictions and theirs.has_predictions):
        return None
    assert challenger.truth is not None and challenger.predicted is not None
    assert theirs.truth is not None and theirs.predicted is not None
    if theirs.truth != challenger.truth:
        raise ValueError(
            "the champion's and the challenger's per-image results list different labels: they were not "
            "measured on the same images in the same order"
        )
    return evidence.paired(challenger.truth, challenger.predicted, theirs.predicted)


def _champion_check(
    challenger: TestMetrics, champion: Champion | None, paired: PairedComparison | None
) -> Check:
    if champion is None:
        return Check("champion", PASS, "no production model yet: nothing to compare against")
    theirs = champion.metrics
    if theirs.labels != challenger.labels:
        return Check(
            "champion",
            PASS,
            f"production model {champion.version} has classes "
            f"{list(theirs.labels)}, not {list(challenger.labels)}: "
            "not comparable, thresholds only",
        )
    if theirs.manifest_version != challenger.manifest_version or theirs.n != challenger.n:
        raise ValueError(
            f"the champion's metrics are on test manifest {theirs.manifest_version} (n={theirs.n}), the "
            f"challenger's on {challenger.manifest_version} (n={challenger.n}): compare on the same one"
        )
    versus = f"production model {champion.version} ({theirs.accuracy:.4f})"
    if paired is None:
        ok = challenger.accuracy + _TOLERANCE >= theirs.accuracy
        relation = "not worse than" if ok else "worse than"
        return Check(
            "champion",
            PASS if ok else FAIL,
            f"test accuracy {challenger.accuracy:.4f} is {relation} {versus} on manifest "
            f"{challenger.manifest_version} (accuracies only: no per-image results to pair)",
        )
    low, high = paired.difference_interval()
    same_images = (
        f"on the same {paired.n} images it alone is right on {paired.wins}, the champion alone on "
        f"{paired.losses} (difference {paired.difference:+.4f}, 95% interval {low:+.4f} to {high:+.4f}, "
        f"McNemar exact p={paired.p_value:.4f})"
    )
    facts = {"paired": paired.to_dict()}
    if paired.wins >= paired.losses:
        return Check(
            "champion",
            PASS,
            f"test accuracy {challenger.accuracy:.4f} is not worse than {versus}: {same_images}",
            facts,
        )
    if paired.significant:
        return Check(
            "champion",
            FAIL,
            f"test accuracy {challenger.accuracy:.4f} is significantly worse than {versus}: {same_images}",
            facts,
        )
    needed = paired.images_to_decide()
    return Check(
        "champion",
        INSUFFICIENT_EVIDENCE,
        f"test accuracy {challenger.accuracy:.4f} is lower than {versus}, but not significantly: "
        f"{same_images}; at these rates a test split of about {needed} images would tell",
        facts,
        needed,
    )
