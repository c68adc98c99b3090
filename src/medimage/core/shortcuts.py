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

from collections.abc import Sequence
from typing import Any

import numpy as np

from medimage.core.metrics import binary_auc

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
    label_array = np.asarray(labels)
    w = np.asarray(widths, dtype=np.float64)
    h = np.asarray(heights, dtype=np.float64)
    properties = {"aspect_ratio": w / np.maximum(h, 1.0), "megapixels": w * h / 1e6}
    report: dict[str, Any] = {"n": len(label_array), "warnings": []}
    for name, values in properties.items():
        per_class: dict[str, Any] = {}
        for label in classes:
            members = label_array == label
            if members.sum() < MIN_PER_CLASS or (~members).sum() < MIN_PER_CLASS:
                continue
            auc = binary_auc(members, values)
            per_class[label] = {
                "median": round(float(np.median(values[members])), 3),
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
