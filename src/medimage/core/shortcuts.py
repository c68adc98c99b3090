"""Shortcut audit: does an image's shape alone tell its label?

Every image is resized to a square before training, so the original aspect ratio becomes a distortion
the network can see. When the classes came from different machines or periods, that distortion can
separate them better than the anatomy does: in ChestXRay2017 the full-resolution pneumonia X-rays are
wider (width/height about 1.5) than the normal ones (about 1.2). A network that learns the squeeze
instead of the lungs is right on its own validation split and wrong on the next hospital's images.
This audit measures, per class, how well the aspect ratio and the pixel count alone rank that class
above the others (one-vs-rest AUC; 0.5 means no information) and warns when either is a strong cue.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

# |AUC - 0.5| above this: the property alone separates the class from the rest most of the time.
WARN_MARGIN = 0.25
MIN_PER_CLASS = 5
ADVICE = {
    "aspect_ratio": "squeezed to a square, it shows as a distortion: keep aspect-ratio augmentation on",
    "megapixels": "resized, it shows as sharpness and noise: keep blur, sharpening and noise augmentation on",
}


def audit_shapes(
    labels: Sequence[str], widths: Sequence[int], heights: Sequence[int], classes: Sequence[str]
) -> dict[str, Any]:
    """Per-class median and one-vs-rest AUC of aspect ratio and pixel count, with warnings."""
    return audit_shape_counts(Counter(zip(labels, widths, heights, strict=True)), classes)


def audit_shape_counts(counts: Mapping[tuple[str, int, int], int], classes: Sequence[str]) -> dict[str, Any]:
    """The same audit from how many images have each (label, width, height): a catalog of any size is
    audited in memory bounded by its distinct shapes, not its images."""
    properties: dict[str, Callable[[float, float], float]] = {
        "aspect_ratio": lambda w, h: w / max(h, 1.0),
        "megapixels": lambda w, h: w * h / 1e6,
    }
    report: dict[str, Any] = {"n": sum(counts.values()), "warnings": []}
    for name, measure in properties.items():
        # value -> label -> images, so ties between shapes of the same value rank together
        by_value: dict[float, Counter[str]] = {}
        for (label, width, height), n in counts.items():
            by_value.setdefault(measure(float(width), float(height)), Counter())[label] += n
        ordered = sorted(by_value.items())
        per_class: dict[str, Any] = {}
        for label in classes:
            members = sum(c[label] for _, c in ordered)
            if members < MIN_PER_CLASS or report["n"] - members < MIN_PER_CLASS:
                continue
            auc = _weighted_auc([(c[label], c.total() - c[label]) for _, c in ordered])
            per_class[label] = {
                "median": round(_weighted_median([(v, c[label]) for v, c in ordered], members), 3),
                "auc": None if auc is None else round(auc, 3),
            }
            # With two classes the second one's AUC is 1 - the first's: one warning says it all.
            already_warned = len(classes) == 2 and len(per_class) == 2
            if auc is not None and abs(auc - 0.5) > WARN_MARGIN and not already_warned:
                direction = "higher" if auc > 0.5 else "lower"
                report["warnings"].append(
                    f"{name} alone tells '{label}' from the rest (AUC {auc:.2f}, '{label}' "
                    f"{direction}); the model may learn it instead of the anatomy ({ADVICE[name]}, and "
                    "check the model on images from another source)"
                )
        report[name] = per_class
    return report


def _weighted_auc(groups: list[tuple[int, int]]) -> float | None:
    """ROC AUC from (positives, negatives) per distinct value in ascending order; ties count 1/2 (the
    rank-sum AUC of ``medimage.core.metrics.binary_auc``)."""
    positives = sum(p for p, _ in groups)
    negatives = sum(n for _, n in groups)
    if positives == 0 or negatives == 0:
        return None
    below = 0
    wins = 0.0
    for p, n in groups:
        wins += p * (below + n / 2.0)
        below += n
    return wins / (positives * negatives)


def _weighted_median(groups: list[tuple[float, int]], total: int) -> float:
    """The median of ``total`` values given as (value, count) in ascending order (numpy's definition)."""
    wanted = ((total - 1) // 2, total // 2)
    picked: list[float] = []
    seen = 0
    for value, count in groups:
        while len(picked) < 2 and wanted[len(picked)] < seen + count:
            picked.append(value)
        seen += count
    return (picked[0] + picked[1]) / 2.0
