"""Acquisition shifts: how a model does on images that look like another scanner's, site's or year's.

A patient-grouped validation split comes from the same hospital, machines and period as the training
images, so it overstates accuracy on anything else (ChestXRay2017's official test split runs about 8
points below it). With no second site's images at hand, this module measures the next best thing: the
same held-out images, each changed the way acquisition and processing differ between sites, scored
through the serving classifier. A model whose accuracy holds across these is one that does not lean on
exposure, sharpness, framing or compression cues.

Every change works on the decoded file at its own resolution (sizes are relative to the image), and the
result is re-encoded losslessly as PNG (JPEG for the compression shift), so the serving path decodes,
resizes and classifies it exactly as it would a real upload. Pure PIL and numpy: no AWS, no TensorFlow.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter, ImageOps

from medimage.core.selective import Threshold
from medimage.evaluation.scoring import Classifier, Scored, metrics_of, probabilities, scored


@dataclass(frozen=True)
class Shift:
    name: str
    description: str
    apply: Callable[[Image.Image], Image.Image]
    encode_as_jpeg: int | None = None  # JPEG quality; None: lossless PNG


def _gamma(value: float) -> Callable[[Image.Image], Image.Image]:
    table = [round(255 * (i / 255) ** value) for i in range(256)]
    return lambda image: image.point(table * len(image.getbands()))


def _noise(sigma: float) -> Callable[[Image.Image], Image.Image]:
    def apply(image: Image.Image) -> Image.Image:
        rng = np.random.default_rng(0)  # the same noise for every model compared
        pixels = np.asarray(image, dtype=np.float32)
        noisy = np.clip(pixels + rng.normal(0.0, sigma, pixels.shape), 0, 255).astype(np.uint8)
        return Image.fromarray(noisy, mode=image.mode)

    return apply


def _crop(left: float, top: float) -> Callable[[Image.Image], Image.Image]:
    """Cut a fraction off each side: a tighter field of view, or (one axis only) another aspect ratio."""

    def apply(image: Image.Image) -> Image.Image:
        w, h = image.size
        dx, dy = round(w * left), round(h * top)
        return image.crop((dx, dy, w - dx, h - dy))

    return apply


def _pad(fraction: float) -> Callable[[Image.Image], Image.Image]:
    """A black border: a wider field of view with the collimated edge in the picture."""

    def apply(image: Image.Image) -> Image.Image:
        w, h = image.size
        return ImageOps.expand(image, border=(round(w * fraction), round(h * fraction)), fill=0)

    return apply


def _relative(make: Callable[[float], ImageFilter.Filter], fraction: float) -> Callable[..., Image.Image]:
    return lambda image: image.filter(make(max(0.5, fraction * min(image.size))))


SHIFTS: tuple[Shift, ...] = (
    Shift("gamma_0.67", "brighter mid-tones (another exposure or display curve)", _gamma(0.67)),
    Shift("gamma_1.5", "darker mid-tones", _gamma(1.5)),
    Shift("contrast_0.6", "flat, low-contrast film", lambda im: ImageEnhance.Contrast(im).enhance(0.6)),
    Shift(
        "contrast_1.4", "harsh, high-contrast processing", lambda im: ImageEnhance.Contrast(im).enhance(1.4)
    ),
    Shift("equalize", "histogram-equalised processing", ImageOps.equalize),
    Shift(
        "blur", "softer detector (Gaussian, 0.5% of the image)", _relative(ImageFilter.GaussianBlur, 0.005)
    ),
    Shift(
        "sharpen",
        "vendor edge enhancement (unsharp mask)",
        _relative(lambda r: ImageFilter.UnsharpMask(radius=r, percent=150, threshold=0), 0.01),
    ),
    Shift("noise", "quantum noise (Gaussian, sigma 10 grey levels)", _noise(10.0)),
    Shift("jpeg_q15", "heavy JPEG compression (quality 15)", lambda im: im, encode_as_jpeg=15),
    Shift("crop_85", "tighter field of view (centre 85%)", _crop(0.075, 0.075)),
    Shift("pad_12", "wider field of view with a black border (12% each side)", _pad(0.12)),
    Shift("aspect_wide", "wider aspect ratio before resizing (10% cut top and bottom)", _crop(0.0, 0.1)),
    Shift("aspect_tall", "taller aspect ratio before resizing (10% cut left and right)", _crop(0.1, 0.0)),
    Shift(
        "rotate_7", "patient rotated 7 degrees", lambda im: im.rotate(7, resample=Image.Resampling.BILINEAR)
    ),
)
SHIFT_NAMES = tuple(shift.name for shift in SHIFTS)


def get_shifts(names: Sequence[str] | None = None) -> list[Shift]:
    if not names:
        return list(SHIFTS)
    by_name = {shift.name: shift for shift in SHIFTS}
    unknown = [name for name in names if name not in by_name]
    if unknown:
        raise ValueError(f"unknown shift(s) {unknown}; known: {', '.join(SHIFT_NAMES)}")
    return [by_name[name] for name in names]


def shifted_bytes(data: bytes, shift: Shift) -> bytes:
    """The file, decoded, changed by ``shift`` and encoded again (PNG, or JPEG for compression)."""
    image = Image.open(io.BytesIO(data))
    image = image.convert("L" if image.mode in {"L", "I;16", "I", "1"} else "RGB")
    changed = shift.apply(image)
    out = io.BytesIO()
    if shift.encode_as_jpeg is not None:
        changed.save(out, format="JPEG", quality=shift.encode_as_jpeg)
    else:
        changed.save(out, format="PNG", compress_level=1)
    return out.getvalue()


def shifted_array(image: np.ndarray, shift: Shift) -> np.ndarray:
    """A model-input array (H x W x 1 or 3, 0..255) changed by ``shift`` at the array's own size (a crop
    or a border is resized back, JPEG is encoded and decoded): `shifted_bytes` for a trainer that holds
    arrays, not files."""
    pixels = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    gray = pixels.shape[-1] == 1
    picture = Image.fromarray(pixels[..., 0] if gray else pixels, mode="L" if gray else "RGB")
    changed = shift.apply(picture)
    if shift.encode_as_jpeg is not None:
        out = io.BytesIO()
        changed.save(out, format="JPEG", quality=shift.encode_as_jpeg)
        changed = Image.open(io.BytesIO(out.getvalue()))
    if changed.size != picture.size:
        changed = changed.resize(picture.size, Image.Resampling.BILINEAR)
    result = np.asarray(changed, dtype=np.float32)
    return result[..., None] if gray else result


def _summary(metrics: dict[str, Any]) -> dict[str, Any]:
    summary = {
        "accuracy": metrics["accuracy"],
        "macro_auc": metrics["macro_auc"],
        "ece": metrics["ece"],
        "recall": {label: m["recall"] for label, m in metrics["per_class"].items()},
    }
    if "selective" in metrics:
        summary["coverage"] = metrics["selective"]["coverage"]
        summary["accuracy_above"] = metrics["selective"]["accuracy_above"]
    return summary


def _mean(values: Sequence[float | None]) -> float | None:
    present = [value for value in values if value is not None]
    return round(float(np.mean(present)), 6) if present else None


def shifted_probabilities(
    classifier: Classifier, files: Sequence[bytes], shifts: Sequence[Shift] | None = None
) -> dict[str, np.ndarray]:
    """The classifier's probabilities (n x C) for the files under each shift, by shift name."""
    return {name: result.probabilities for name, result in shifted_scored(classifier, files, shifts).items()}


def shifted_scored(
    classifier: Classifier, files: Sequence[bytes], shifts: Sequence[Shift] | None = None
) -> dict[str, Scored]:
    """What serving answers for the files under each shift (probabilities, novelty, reasons), by name."""
    return {
        shift.name: scored(classifier, (shifted_bytes(data, shift) for data in files))
        for shift in (shifts if shifts is not None else SHIFTS)
    }


def robustness(
    classifier: Classifier,
    files: Sequence[bytes],
    truth: Sequence[int],
    shifts: Sequence[Shift] | None = None,
    threshold: Threshold | None = None,
) -> dict[str, Any]:
    """Clean and shifted metrics of one classifier on the same images, plus the mean and the worst;
    with a review ``threshold``, also the coverage and selective accuracy it gives under each shift."""
    return robustness_of(
        probabilities(classifier, files),
        shifted_probabilities(classifier, files, shifts),
        truth,
        classifier.labels,
        threshold,
    )


def robustness_of(
    clean_probs: np.ndarray,
    shifted_probs: dict[str, np.ndarray],
    truth: Sequence[int],
    labels: list[str],
    threshold: Threshold | None = None,
) -> dict[str, Any]:
    """`robustness` for probabilities already computed (clean, and by shift name)."""
    clean = metrics_of(clean_probs, truth, labels, threshold)
    results = {
        name: _summary(metrics_of(probs, truth, labels, threshold)) for name, probs in shifted_probs.items()
    }
    accuracies = {name: result["accuracy"] for name, result in results.items()}
    worst = min(accuracies, key=accuracies.__getitem__) if accuracies else None
    report: dict[str, Any] = {
        "n": clean["n"],
        "clean": _summary(clean),
        "shifted_mean_accuracy": float(np.mean(list(accuracies.values()))) if accuracies else None,
        "shifted_mean_ece": _mean([result["ece"] for result in results.values()]),
        "worst_shift": {"name": worst, "accuracy": accuracies[worst]} if worst else None,
        "shifts": results,
    }
    if threshold is not None:
        coverage = {name: result["coverage"] for name, result in results.items()}
        lowest = min(coverage, key=coverage.__getitem__) if coverage else None
        report["review_threshold"] = threshold
        report["shifted_mean_coverage"] = _mean(list(coverage.values()))
        report["shifted_mean_accuracy_above"] = _mean(
            [result["accuracy_above"] for result in results.values()]
        )
        report["lowest_coverage_shift"] = (
            {"name": lowest, **{k: results[lowest][k] for k in ("coverage", "accuracy_above")}}
            if lowest
            else None
        )
    return report
