"""Classify images with the TFLite Task Library's ``ImageClassifier``, as the Android app does.

Runs in the tflite-support virtual environment (``.venv-tflite``), as a script that imports nothing of
medimage: ``python task_library.py MODEL.tflite IMAGE...`` (or ``--list FILE`` with one path a line).
Each image is decoded by the Task Library itself (``TensorImage.create_from_file``), made RGB as an
Android bitmap is, and the classifier resizes it to the model's input as on the device. Prints one JSON:
``{"metadata": <MetadataDisplayer JSON>, "associated_files": [...], "results": [{"path", "categories":
[{"index", "label", "score"}, ...]}]}``, categories best first, all classes. A failure exits 1 with one
line on stderr.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def _rgb_pixels(vision: Any, path: str) -> Any:
    """The file decoded by the Task Library, as an Android bitmap holds it: RGB. A gray JPEG decodes to
    one channel, which the classifier refuses ("Grayscale format does not convert to other formats");
    Android's BitmapFactory gives ARGB_8888 with R = G = B, so the gray plane is repeated into three.
    The caller keeps the returned array alive while its TensorImage is used (the image points into it)."""
    import numpy as np

    decoded = vision.TensorImage.create_from_file(path)
    pixels = np.array(decoded.buffer)  # a copy: the decoded image's memory is freed with it
    if pixels.ndim == 3 and pixels.shape[2] == 3:
        return pixels
    gray = pixels if pixels.ndim == 2 else pixels[..., 0]
    return np.ascontiguousarray(np.repeat(gray[..., None], 3, axis=2))


def classify(model: str, images: list[str]) -> dict[str, Any]:
    from tflite_support import metadata
    from tflite_support.task import core, processor, vision

    options = vision.ImageClassifierOptions(
        base_options=core.BaseOptions(file_name=model),
        classification_options=processor.ClassificationOptions(max_results=-1),
    )
    classifier = vision.ImageClassifier.create_from_options(options)
    results = []
    for path in images:
        pixels = _rgb_pixels(vision, path)
        result = classifier.classify(vision.TensorImage.create_from_array(pixels))
        head = result.classifications[0]
        categories = [{"index": c.index, "label": c.category_name, "score": c.score} for c in head.categories]
        results.append({"path": path, "categories": categories})
    displayer = metadata.MetadataDisplayer.with_model_file(model)
    return {
        "metadata": json.loads(displayer.get_metadata_json()),
        "associated_files": displayer.get_packed_associated_file_list(),
        "results": results,
    }


def main(argv: list[str]) -> int:
    if len(argv) >= 3 and argv[1] == "--list":
        images = [line for line in Path(argv[2]).read_text(encoding="utf-8").splitlines() if line]
    else:
        images = argv[1:]
    if not argv:
        print("usage: task_library.py MODEL.tflite (IMAGE... | --list FILE)", file=sys.stderr)
        return 2
    try:
        result = classify(argv[0], images)
    except Exception as exc:  # one line for the caller, whatever the library raised
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
