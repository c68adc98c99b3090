"""Out-of-distribution sets and the routing report: what serving labels, and what it sends to review.

Two kinds of set stand beside the clean and shifted images of a labelled tree:

- images made from that tree's own images that are still of its kind but badly so (`MADE_FROM_IMAGES`):
  inverted, cropped to a corner, windowed so that most of the image is white. They should go to review
  as unlike the training images;
- images of another kind altogether: folders a user names (photographs, scans of another modality) and
  pages rendered here (`rendered_pages`: documents and screenshots). None may be labeled automatically.

`routing` says, for one set, the share labeled automatically, how right those labels are, the share of
the wrong answers that went to review, and why images went to review.
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageOps

from medimage.core.errors import RejectedInput


@dataclass(frozen=True)
class MadeSet:
    name: str
    description: str
    make: Callable[[Image.Image], Image.Image]


def _corner(image: Image.Image) -> Image.Image:
    width, height = image.size
    return image.crop((0, 0, max(1, int(width * 0.3)), max(1, int(height * 0.3)))).resize(image.size)


def _blown_window(image: Image.Image) -> Image.Image:
    # Only the darkest quarter of the grey range is spread over the display: most of the image is white.
    return image.point(lambda value: min(255, value * 4))


MADE_FROM_IMAGES: tuple[MadeSet, ...] = (
    MadeSet(
        "inverted",
        "grey levels inverted (a negative, or a wrong photometric interpretation)",
        ImageOps.invert,
    ),
    MadeSet(
        "corner_crop", "the top-left 30% of the image, enlarged (a mis-framed or partial image)", _corner
    ),
    MadeSet(
        "bad_window", "windowed on the darkest quarter of the grey range (most of it white)", _blown_window
    ),
)


def encode_png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def made_from(contents: Iterable[bytes], made: MadeSet) -> list[bytes]:
    """Each image changed by ``made``, as PNG bytes (lossless, so only the change differs)."""
    out = []
    for data in contents:
        with Image.open(io.BytesIO(data)) as image:
            out.append(encode_png(made.make(image.convert("L"))))
    return out


WORDS = [
    "patient",
    "report",
    "findings",
    "impression",
    "history",
    "technique",
    "comparison",
    "recommendation",
    "follow",
    "up",
    "clinic",
    "invoice",
    "total",
    "amount",
    "due",
    "date",
    "reference",
    "account",
    "payment",
    "terms",
    "order",
    "shipping",
    "address",
    "page",
]


def rendered_pages(count: int, seed: int = 0, size: tuple[int, int] = (600, 800)) -> list[bytes]:
    """Documents (lines of text on white) and screenshots (windows, buttons and text on a coloured
    desktop), alternating, as PNG bytes: the pictures a phone or a scanner sends by mistake."""
    rng = np.random.default_rng(seed)
    pages = []
    for index in range(count):
        if index % 2 == 0:
            image = Image.new("RGB", size, "white")
            draw = ImageDraw.Draw(image)
            y = 40
            while y < size[1] - 40:
                line = " ".join(rng.choice(WORDS, size=int(rng.integers(4, 10))))
                draw.text((40, y), line, fill=(0, 0, 0))
                y += int(rng.integers(18, 30))
        else:
            colour = tuple(int(v) for v in rng.integers(40, 220, size=3))
            image = Image.new("RGB", size, colour)
            draw = ImageDraw.Draw(image)
            for _ in range(int(rng.integers(2, 5))):
                left, top = int(rng.integers(0, size[0] // 2)), int(rng.integers(0, size[1] // 2))
                right, bottom = (
                    left + int(rng.integers(150, size[0] // 2)),
                    top + int(rng.integers(120, size[1] // 2)),
                )
                draw.rectangle((left, top, right, bottom), fill="white", outline="black")
                draw.rectangle((left, top, right, top + 22), fill=(60, 90, 160))
                draw.text((left + 8, top + 5), " ".join(rng.choice(WORDS, size=3)), fill="white")
                for row in range(top + 34, bottom - 20, 20):
                    draw.text((left + 10, row), " ".join(rng.choice(WORDS, size=4)), fill="black")
        pages.append(encode_png(image))
    return pages


def routing(
    reasons: Sequence[str | None], predicted: Sequence[int] | None = None, truth: Sequence[int] | None = None
) -> dict[str, Any]:
    """One set's routing: ``labeled_automatically`` (share with no review reason) and ``reasons`` (counts);
    with labels, ``accuracy`` (all answers), ``accuracy_of_labeled`` and ``errors_sent_to_review`` (the
    share of wrong answers that went to review; None when none was wrong)."""
    n = len(reasons)
    labeled = np.array([reason is None for reason in reasons], dtype=bool)
    report: dict[str, Any] = {
        "n": n,
        "labeled_automatically": round(float(labeled.mean()), 6) if n else None,
        "reasons": dict(sorted(Counter(reason or "labeled" for reason in reasons).items())),
    }
    if predicted is not None and truth is not None:
        right = np.asarray(predicted) == np.asarray(truth)
        wrong = ~right
        report["accuracy"] = round(float(right.mean()), 6) if n else None
        report["accuracy_of_labeled"] = round(float(right[labeled].mean()), 6) if labeled.any() else None
        report["errors_sent_to_review"] = round(float((~labeled[wrong]).mean()), 6) if wrong.any() else None
    return report


def _mean(reports: Iterable[dict[str, Any]], key: str) -> float | None:
    values = [report[key] for report in reports if report.get(key) is not None]
    return round(float(np.mean(values)), 6) if values else None


def side_by_side(
    classifier: Any,
    files: Sequence[bytes],
    truth: Sequence[int],
    shifts: Sequence[Any],
    foreign: dict[str, list[bytes]],
    made_limit: int = 200,
) -> dict[str, Any]:
    """The routing of the labelled images clean and under each shift, of images made from them
    (`MADE_FROM_IMAGES`), and of each foreign set, as serving routes them (its thresholds and novelty
    policy): coverage, the accuracy of what is labeled automatically, the errors sent to review."""
    from medimage.evaluation.scoring import scored
    from medimage.evaluation.shifts import shifted_bytes

    def labelled(contents: Iterable[bytes]) -> dict[str, Any]:
        result = scored(classifier, contents)
        return routing(result.reasons, list(result.probabilities.argmax(axis=1)), truth)

    def unlabelled(contents: Iterable[bytes]) -> dict[str, Any]:
        # An image serving rejects (a format it does not take) is not labeled either: counted as such.
        reasons: list[str | None] = []
        for data in contents:
            try:
                reasons.append(classifier.predict_bytes(data).review_reason)
            except RejectedInput as exc:
                reasons.append(f"rejected:{exc.code}")
        return routing(reasons)

    by_shift = {shift.name: labelled(shifted_bytes(data, shift) for data in files) for shift in shifts}
    keys = ("labeled_automatically", "accuracy", "accuracy_of_labeled", "errors_sent_to_review")
    return {
        "clean": labelled(files),
        "shifted_mean": {key: _mean(by_shift.values(), key) for key in keys},
        "shifted": by_shift,
        "made_from_images": {
            made.name: {"description": made.description, **unlabelled(made_from(files[:made_limit], made))}
            for made in MADE_FROM_IMAGES
        },
        "foreign": {name: unlabelled(contents) for name, contents in foreign.items()},
    }
