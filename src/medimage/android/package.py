"""The model for the Android app: a ``.tflite`` with an RGB input and TFLite metadata, from a trained model.

Two steps in two environments. TensorFlow (this environment) builds the graph (``graph.py``: the trained
network behind an RGB input converted to its gray input inside) and checks it against the network on
the same pixels. tflite-support's metadata writer (``metadata_writer.py``, run as a subprocess in the
tflite-support environment, ``.venv-tflite`` by default, or ``$MEDIMAGE_TFLITE_SUPPORT_PYTHON``) then adds
the metadata the TFLite Task Library and Android Studio's ML Model Binding read: name, version,
description, author, license, the input's normalisation and size, and the labels file as
``TENSOR_AXIS_LABELS``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from medimage.android import graph
from medimage.core.errors import AndroidExportError

TFLITE_SUPPORT_ENV = "MEDIMAGE_TFLITE_SUPPORT_PYTHON"
REPO_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_TFLITE_SUPPORT_PYTHON = REPO_ROOT / ".venv-tflite" / "bin" / "python"
SETUP_HINT = "make tflite-install (creates .venv-tflite)"
TFLITE_SUPPORT_VERSION = "0.4.4"
METADATA_SCRIPT = Path(__file__).with_name("metadata_writer.py")
TASK_LIBRARY_SCRIPT = Path(__file__).with_name("task_library.py")
# The Android model's file in a trainer's model directory (beside model.tflite and model-int8.tflite).
MODEL_DIR_FILE = "model-android.tflite"
KERAS_MODEL_FILE = "model.keras"
INPUT_MEAN = [0.0]
INPUT_STD = [1.0]
OUTPUT_NAME = "probability"  # ML Model Binding names the accessor after it: probabilityAsCategoryList
DEFAULT_AUTHOR = "medimage"
# The data each bundled preset learns from, and the attribution its license (CC BY 4.0) asks for.
KERMANY_2018 = (
    "Trained on data licensed CC BY 4.0: Kermany, D., Zhang, K., Goldbaum, M. (2018), 'Labeled Optical "
    "Coherence Tomography (OCT) and Chest X-Ray Images for Classification', Mendeley Data, v2, "
    "doi:10.17632/rscbjbr9sj.2; Kermany et al., Cell 172(5):1122-1131 (2018). "
    "https://creativecommons.org/licenses/by/4.0/"
)
DATA_LICENSES = {"chestxray2017": KERMANY_2018, "chestxray2017-binary": KERMANY_2018, "oct2017": KERMANY_2018}
SUBPROCESS_TIMEOUT_S = 600
CHECK_IMAGES = 8


@dataclass(frozen=True)
class AndroidModel:
    """What was written: the file, its metadata (MetadataDisplayer's JSON), the labels file packed in it,
    the check against the trained network, and the tflite-support version that wrote the metadata."""

    path: Path
    name: str
    metadata: dict[str, Any]
    associated_files: list[str]
    check: dict[str, Any]
    tflite_support: str

    def summary(self) -> dict[str, Any]:
        """The ``model.json`` ``android`` entry (file name relative to the model directory)."""
        return {
            "file": self.path.name,
            "name": self.name,
            "input": (
                f"float32 1 x {self.check['supersample']}H x {self.check['supersample']}W x 3 RGB, 0..255 "
                "(metadata mean 0, std 1), made gray and box-averaged to H x W inside"
            ),
            "output": "probabilities (softmax), float32",
            "associated_files": self.associated_files,
            "tflite_support": self.tflite_support,
            "check": self.check,
        }


def tflite_support_python() -> Path:
    """The Python of the tflite-support environment, or AndroidExportError ``tflite_support_missing``."""
    configured = os.environ.get(TFLITE_SUPPORT_ENV)
    path = Path(configured) if configured else DEFAULT_TFLITE_SUPPORT_PYTHON
    if not (path.is_file() and os.access(path, os.X_OK)):
        source = f"${TFLITE_SUPPORT_ENV}" if configured else "the default"
        raise AndroidExportError(
            f"no tflite-support environment: {path} ({source}) is not an executable Python. Run "
            f"`{SETUP_HINT}`, or set {TFLITE_SUPPORT_ENV} to a Python with tflite-support "
            f"{TFLITE_SUPPORT_VERSION}",
            "tflite_support_missing",
        )
    return path


def read_model_dir(model_dir: Path) -> tuple[dict[str, Any], Path]:
    """``model.json`` and the path of ``model.keras``, or AndroidExportError with a stable code."""
    if not model_dir.is_dir():
        raise AndroidExportError(f"{model_dir} is not a model directory", "model_not_found")
    keras_path = model_dir / KERAS_MODEL_FILE
    if not keras_path.is_file():
        raise AndroidExportError(
            f"{model_dir} has no {KERAS_MODEL_FILE}: the Android model is made from the trained network "
            "(a trainer's model directory has it)",
            "no_keras_model",
        )
    try:
        meta = json.loads((model_dir / "model.json").read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError) as exc:
        raise AndroidExportError(
            f"{model_dir / 'model.json'} cannot be read: {exc}", "bad_model_json"
        ) from None
    if not isinstance(meta, dict) or not meta.get("labels"):
        raise AndroidExportError(f"{model_dir / 'model.json'} lists no labels", "bad_model_json")
    return meta, keras_path


def default_name(meta: dict[str, Any]) -> str:
    """``<preset>`` as a file name ML Model Binding turns into a class name (``chestxray2017_binary``)."""
    base = str(meta.get("preset") or meta.get("dataset") or "medimage")
    return re.sub(r"[^0-9A-Za-z]+", "_", base).strip("_").lower() or "medimage"


def binding_class_name(name: str) -> str:
    """The class Android Studio's ML Model Binding generates for ``<name>.tflite``."""
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[^0-9A-Za-z]+", name) if part)


def _texts(meta: dict[str, Any], height: int, width: int, license_text: str | None) -> dict[str, str]:
    labels = [str(label) for label in meta["labels"]]
    preset = str(meta.get("preset") or meta.get("dataset") or "")
    version = str(meta.get("manifest_version") or meta.get("trained_at") or "unversioned")
    return {
        "name": f"medimage {preset} classifier".replace("  ", " "),
        "version": version,
        "description": (
            f"Classifies an image ({preset}) as one of: {', '.join(labels)}. Input: an RGB image, resized to "
            f"{width} x {height}; the model turns it gray inside as the served model does. Output: the "
            f"probability of each label. Trained {meta.get('trained_at', '')} on manifest {version}. "
            "A research and teaching model, not a medical device."
        ),
        "license": license_text
        or DATA_LICENSES.get(preset)
        or f"The license of the training data of '{preset}' (not recorded: pass --license).",
    }


def check_graph(
    android_content: bytes, network: Any, supersample: int = graph.SUPERSAMPLE, seed: int = 0
) -> dict[str, Any]:
    """The Android file (LiteRT) on RGB images vs. the trained network on their ``convert("L")`` averaged
    over ``supersample`` x ``supersample`` blocks: AndroidExportError ``export_mismatch`` beyond float
    rounding."""
    from medimage.inference.model import resolve_interpreter

    interpreter_class = resolve_interpreter(allow_tensorflow=True)  # the network is Keras: TensorFlow is here

    height, width = graph.image_size(network)
    rng = np.random.default_rng(seed)
    size = (CHECK_IMAGES, height * supersample, width * supersample, 3)
    rgb = rng.integers(0, 256, size, dtype=np.uint8)
    rgb[: CHECK_IMAGES // 2] //= rng.integers(1, 4, (CHECK_IMAGES // 2, 1, 1, 3), dtype=np.uint8)
    gray = np.stack([np.asarray(Image.fromarray(image, "RGB").convert("L")) for image in rgb])
    boxed = (
        gray.reshape(CHECK_IMAGES, height, supersample, width, supersample).astype(np.float64).mean((2, 4))
    )
    reference = network.predict(boxed[..., None].astype(np.float32), verbose=0)
    interpreter = interpreter_class(model_content=android_content, num_threads=1)
    interpreter.allocate_tensors()
    (detail_in,), (detail_out,) = interpreter.get_input_details(), interpreter.get_output_details()
    rows = []
    for image in rgb:
        interpreter.set_tensor(detail_in["index"], image[None].astype(np.float32))
        interpreter.invoke()
        rows.append(interpreter.get_tensor(detail_out["index"])[0])
    candidate = np.stack(rows)
    diff = float(np.max(np.abs(reference - candidate)))
    result = {
        "against": (
            "the trained network on Image.convert('L') of the same RGB pixels"
            + (f", averaged over {supersample} x {supersample} blocks" if supersample > 1 else "")
        ),
        "supersample": supersample,
        "max_abs_diff": round(diff, 8),
        "top1_agreement": float(np.mean(reference.argmax(1) == candidate.argmax(1))),
        "probabilities_sum_to_1": bool(np.allclose(candidate.sum(1), 1.0, atol=1e-4)),
        "n": CHECK_IMAGES,
    }
    if diff > graph.MAX_PROBABILITY_DIFF or not result["probabilities_sum_to_1"]:
        raise AndroidExportError(f"the Android graph disagrees with the network: {result}", "export_mismatch")
    return result


def write_metadata(
    bare: Path, labels: list[str], texts: dict[str, str], size: tuple[int, int], out: Path, python: Path
) -> dict[str, Any]:
    """Run the metadata writer in the tflite-support environment; returns its JSON answer."""
    height, width = size
    with tempfile.TemporaryDirectory(prefix="medimage-android-") as scratch:
        labels_path = Path(scratch) / "labels.txt"  # the name packed into the model and shown by readers
        labels_path.write_text("\n".join(labels) + "\n", encoding="utf-8")
        request = {
            "model": str(bare),
            "out": str(out),
            "labels": str(labels_path),
            "author": texts["author"],
            **{key: texts[key] for key in ("name", "version", "description", "license")},
            "input": {
                "name": graph.INPUT_NAME,
                "description": (
                    f"RGB image, {width} x {height} (the Task Library resizes to it), float32 values 0..255; "
                    "converted to gray inside the model."
                ),
                "mean": INPUT_MEAN,
                "std": INPUT_STD,
                "width": width,
                "height": height,
            },
            "output": {"name": OUTPUT_NAME, "description": "Probabilities of the labels (softmax)."},
        }
        request_path = Path(scratch) / "request.json"
        request_path.write_text(json.dumps(request), encoding="utf-8")
        answer = run_tflite_support(python, METADATA_SCRIPT, [str(request_path)], "metadata_failed")
    return answer


def run_tflite_support(python: Path, script: Path, args: list[str], code: str) -> dict[str, Any]:
    """A script of this package in the tflite-support environment (isolated: no PYTHON* variables, no
    user site, not this package); its stdout JSON, or AndroidExportError ``code`` with its stderr."""
    try:
        done = subprocess.run(
            [str(python), "-I", str(script), *args],
            capture_output=True,
            text=True,
            timeout=SUBPROCESS_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise AndroidExportError(f"{python} {script.name} did not run: {exc}", code) from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise AndroidExportError(f"{script.name} failed in {python}: {last}", code)
    return json.loads(done.stdout)


def classify_with_task_library(model: Path, images: list[Path], python: Path | None = None) -> dict[str, Any]:
    """The TFLite Task Library's ``ImageClassifier`` (in the tflite-support environment) on these image
    files, as the Android app runs it: ``task_library.py``'s JSON (metadata and, per image, the
    categories best first)."""
    with tempfile.TemporaryDirectory(prefix="medimage-android-") as scratch:
        listing = Path(scratch) / "images.txt"
        listing.write_text("".join(f"{path}\n" for path in images), encoding="utf-8")
        return run_tflite_support(
            python or tflite_support_python(),
            TASK_LIBRARY_SCRIPT,
            [str(model), "--list", str(listing)],
            "task_library_failed",
        )


def write_android_model(
    network: Any,
    meta: dict[str, Any],
    out: Path,
    name: str | None = None,
    author: str = DEFAULT_AUTHOR,
    license_text: str | None = None,
    python: Path | None = None,
    supersample: int = graph.SUPERSAMPLE,
) -> AndroidModel:
    """``network`` (the trained Keras model) as ``out``, with metadata built from ``meta`` (model.json)."""
    python = python or tflite_support_python()
    android = graph.rgb_network(network, supersample)
    content = graph.to_tflite(android)
    check = check_graph(content, network, supersample)
    size = graph.image_size(android)
    texts = {**_texts(meta, *size, license_text), "author": author}
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="medimage-android-") as scratch:
        bare = Path(scratch) / "bare.tflite"
        bare.write_bytes(content)
        staged = Path(scratch) / out.name
        answer = write_metadata(bare, [str(x) for x in meta["labels"]], texts, size, staged, python)
        shutil.move(staged, out)
    return AndroidModel(
        path=out,
        name=name or out.stem,
        metadata=answer["metadata"],
        associated_files=list(answer["associated_files"]),
        check=check,
        tflite_support=str(answer["tflite_support"]),
    )


def model_dir_entry(network: Any, meta: dict[str, Any], model_dir: Path, log: Any = print) -> dict[str, Any]:
    """The trainer's export step: ``model_dir/model-android.tflite`` and its ``model.json`` ``android``
    entry, or, where it cannot be made (no tflite-support environment, as in SageMaker's training
    container), ``{"file": null, "code", "reason"}`` and one log line; the served model is unaffected."""
    try:
        result = write_android_model(network, meta, model_dir / MODEL_DIR_FILE)
    except AndroidExportError as exc:
        reason = str(exc)
        if exc.code == "tflite_support_missing":
            reason += (
                f". tflite-support {TFLITE_SUPPORT_VERSION} has wheels for CPython 3.9-3.11 only (this is "
                f"{sys.version_info.major}.{sys.version_info.minor}); make it from this model directory "
                "with `medimage export android --model DIR --out OUT` where .venv-tflite exists"
            )
        log(f"android: no {MODEL_DIR_FILE} written [{exc.code}]: {reason}")
        return {"file": None, "code": exc.code, "reason": reason}
    log(f"android: wrote {MODEL_DIR_FILE} (tflite-support {result.tflite_support}), check {result.check}")
    return result.summary()


def export_android(
    model_dir: Path,
    out_dir: Path,
    name: str | None = None,
    author: str = DEFAULT_AUTHOR,
    license_text: str | None = None,
) -> AndroidModel:
    """``medimage export android``: ``out_dir/<name>.tflite`` and ``out_dir/README.md`` for the app."""
    meta, keras_path = read_model_dir(model_dir)
    python = tflite_support_python()  # before the minutes of TensorFlow work, not after
    name = name or default_name(meta)
    if not re.fullmatch(r"[A-Za-z][0-9A-Za-z_]*", name):
        raise ValueError(f"--name {name!r}: use letters, digits and _ (ML Model Binding makes a class of it)")
    network = graph.load_network(keras_path)
    result = write_android_model(
        network, meta, out_dir / f"{name}.tflite", name, author, license_text, python
    )
    (out_dir / "README.md").write_text(app_readme(result, meta), encoding="utf-8")
    return result


def app_readme(model: AndroidModel, meta: dict[str, Any]) -> str:
    """The short guide for the TFLClassify skeleton: where the file goes, the Kotlin that calls it."""
    file = model.path.name
    cls = binding_class_name(model.path.stem)
    info = model.metadata
    tensor = info["subgraph_metadata"][0]["input_tensor_metadata"][0]
    size = tensor["content"]["content_properties"]["default_size"]
    labels = ", ".join(str(label) for label in meta["labels"])
    return f"""# {file}: the classifier for the Android app

{info.get("description", "")}

- Input `image`: RGB, float32 `1 x {size["height"]} x {size["width"]} x 3`, values 0..255 (metadata
  normalisation mean 0, std 1); the Task Library resizes the bitmap to it. The model makes it gray inside.
- Output `{OUTPUT_NAME}`: the probability of each label (softmax), float32; labels ({labels}) in the packed
  `labels.txt` (`TENSOR_AXIS_LABELS`), so scores are the served model's.
- Version {info.get("version", "")}, author {info.get("author", "")}. License: {info.get("license", "")}

## Where it goes (TFLClassify skeleton)
ML Model Binding: in Android Studio, File > New > Other > TensorFlow Lite Model, choose `{file}`; it is copied
to `app/src/main/ml/` and the class `{cls}` is generated (`buildFeatures {{ mlModelBinding true }}`).
Task Library instead: copy it to `app/src/main/assets/` and add
`implementation("org.tensorflow:tensorflow-lite-task-vision:0.4.4")`.

## Kotlin
ML Model Binding (as in TFLClassify's `ImageAnalyzer`):

```kotlin
val model = {cls}.newInstance(context)
val image = TensorImage.fromBitmap(bitmap)
val outputs = model.process(image).probabilityAsCategoryList.sortedByDescending {{ it.score }}
model.close()
```

Task Library:

```kotlin
val classifier = ImageClassifier.createFromFile(context, "{file}")
val categories = classifier.classify(TensorImage.fromBitmap(bitmap))[0].categories
```

A research and teaching model, not a medical device.
"""
