"""The inference benchmark (`medimage bench inference`): the LiteRT handler against full TensorFlow.

Both run the real ``functions/inference/app.py`` handler on real API Gateway proxy events, each in a
fresh process pinned to one CPU core; only the model runtime differs:

* ``litert``: what this project ships, the ai-edge-litert interpreter on ``model.tflite``;
* ``tensorflow``: what most Lambda ML samples ship, full TensorFlow loading the Keras model
  (``model.keras`` beside the ``.tflite``, called as ``model(x, training=False)``, the fast path, not
  ``model.predict``); without a ``.keras`` file, ``tf.lite.Interpreter`` on the same ``.tflite``.

Cold start is what Lambda pays: the interpreter's start-up (``process_start_s``, spawn to the first line
of the fresh process) plus the handler's import, model load and first answer
(``medimage.benchmarking.cold_start``: nothing of the harness is imported before the handler, so it cannot
pre-load what the handler needs).
``ship_mb`` sums the installed files of the packages each image would ship (the closure of its
requirements, minus what the Lambda base image already has).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from medimage.checkout import PACKAGE_DIR
from medimage.core.images import IMAGE_SUFFIXES

# The Lambda Python base image already holds these (boto3 and its dependencies).
BASE_IMAGE_PACKAGES = {"boto3", "botocore", "s3transfer", "jmespath", "urllib3", "python-dateutil", "six"}
SHIPPED = {
    "litert": ["ai-edge-litert", "numpy", "pillow", "aws-lambda-powertools", "aws-xray-sdk"],
    "tensorflow": ["tensorflow", "numpy", "pillow", "aws-lambda-powertools", "aws-xray-sdk"],
}


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def _dist(name: str) -> metadata.Distribution | None:
    for candidate in (name, name + "-cpu", name.replace("-", "_")):
        try:
            return metadata.distribution(candidate)
        except metadata.PackageNotFoundError:
            continue
    return None


def ship_bytes(roots: list[str]) -> tuple[int, list[str]]:
    """Installed size of the requirement closure of `roots` (extras and non-matching markers skipped)."""
    from packaging.requirements import Requirement

    seen: dict[str, metadata.Distribution] = {}
    todo = list(roots)
    while todo:
        dist = _dist(todo.pop())
        if dist is None:
            continue
        name = dist.metadata["Name"].lower().replace("_", "-")
        if name in seen or name in BASE_IMAGE_PACKAGES:
            continue
        seen[name] = dist
        for raw in dist.requires or []:
            req = Requirement(raw)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    total = 0
    for dist in seen.values():
        for file in dist.files or []:
            path = Path(str(dist.locate_file(file)))
            if path.is_file():
                total += path.stat().st_size
    total += sum(p.stat().st_size for p in PACKAGE_DIR.rglob("*.py"))
    return total, sorted(seen)


def run(
    model: str,
    images_dir: str,
    repeat: int = 5,
    batch: int = 64,
    cpu: int | None = None,
    runtimes: str = "litert,tensorflow",
) -> dict[str, Any]:
    """Each runtime in a fresh process pinned to one core; the report as `medimage bench` prints it."""
    images = sorted(p for p in Path(images_dir).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise FileNotFoundError(f"no JPEG/PNG images under {images_dir}")
    cpu = cpu if cpu is not None else min(os.sched_getaffinity(0))
    report: dict[str, Any] = {}
    model_path = Path(model).resolve()
    if model_path.is_dir():  # a model directory: the variant model.json says is served
        model_path = model_path / json.loads((model_path / "model.json").read_text())["model_file"]
    dataset = str(json.loads((model_path.parent / "model.json").read_text()).get("dataset") or "local")
    env = {
        **os.environ,
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "MEDIMAGE_MODEL": str(model_path),
        "DATASETS": dataset,
        "DEFAULT_DATASET": dataset,
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_SERVICE_NAME": "inference",
        "POWERTOOLS_METRICS_NAMESPACE": "medimage",
        "MODEL_CHECK_INTERVAL_S": "3600",
    }
    from medimage.checkout import project_file
    from medimage.local.apigateway import to_proxy_event

    app = str(project_file("functions/inference/app.py"))
    with tempfile.TemporaryDirectory() as tmp:
        first_event = Path(tmp) / "first_event.json"
        first = to_proxy_event("POST", "/predict", {"Content-Type": "image/jpeg"}, images[0].read_bytes())
        first_event.write_text(json.dumps(first), encoding="utf-8")
        for runtime in runtimes.split(","):
            out = Path(tmp) / f"{runtime}.json"
            prepare = "None"
            if runtime == "tensorflow":
                prepare = (
                    "lambda m: __import__('medimage.benchmarking.inference', fromlist=['x'])"
                    f".use_tensorflow(m, {str(model_path)!r}, {dataset!r})"
                )
            code = (
                "import time; t0 = time.perf_counter(); w0 = time.time(); import os; "
                f"os.sched_setaffinity(0, {{{cpu}}}); "
                "from medimage.benchmarking.cold_start import first_answer; "
                f"cold = first_answer({app!r}, {str(first_event)!r}, {prepare}); "
                "cold_s = time.perf_counter() - t0; "
                "from medimage.benchmarking.inference import worker; "
                f"worker(w0, cold, cold_s, {runtime!r}, {str(model_path)!r}, {images_dir!r}, "
                f"{repeat}, {batch}, {str(out)!r})"
            )
            start = time.perf_counter()
            spawned = time.time()
            proc = subprocess.run(
                [sys.executable, "-c", code],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            )
            if proc.returncode != 0:
                raise RuntimeError(f"{runtime} benchmark failed:\n{proc.stderr[-3000:]}")
            result = json.loads(out.read_text())
            result["process_start_s"] = round(result.pop("started_wall") - spawned, 3)
            result["cold_start_s"] = round(result["process_start_s"] + result.pop("cold_in_process_s"), 3)
            result["process_wall_s"] = round(time.perf_counter() - start, 3)
            size, packages = ship_bytes(SHIPPED[runtime])
            result["ship_mb"] = round(size / 1e6, 1)
            result["ship_packages"] = packages
            report[runtime] = result
    if "litert" in report and "tensorflow" in report:
        a, b = report["litert"].pop("labels"), report["tensorflow"].pop("labels")
        agree = sum(x == y for x, y in zip(a, b, strict=True)) / len(a)
        report["litert"]["label_agreement_with_tensorflow"] = round(agree, 4)
        report["litert"]["cold_start_speedup_vs_tensorflow"] = round(
            report["tensorflow"]["cold_start_s"] / report["litert"]["cold_start_s"], 1
        )
        for key, name in (
            ("warm_p50_ms_fullres", "warm_p50"),
            ("peak_rss_mb", "peak_rss"),
            ("ship_mb", "ship"),
        ):
            report["litert"][f"{name}_ratio_vs_tensorflow"] = round(
                report["litert"][key] / report["tensorflow"][key], 3
            )
    for result in report.values():
        result.pop("labels", None)
    return report


def floor_ms(model_dir: Path, datas: list[bytes], size: int, repeat: int) -> list[float]:
    """The bare floor of one prediction, no handler: Pillow draft-mode decode, resize and one LiteRT invoke
    of the int8 variant (model.json's ``int8_model_file``), per image."""
    import io

    import numpy as np
    from ai_edge_litert.interpreter import Interpreter
    from PIL import Image

    meta = json.loads((model_dir / "model.json").read_text())
    interpreter = Interpreter(
        model_content=(model_dir / meta.get("int8_model_file", "model-int8.tflite")).read_bytes(),
        num_threads=1,
    )
    interpreter.allocate_tensors()
    inp, outp = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    times = []
    for _ in range(repeat):
        for data in datas:
            start = time.perf_counter()
            image = Image.open(io.BytesIO(data))
            image.draft("L", (size, size))
            image = image.convert("L").resize((size, size), Image.Resampling.BILINEAR)
            array = np.asarray(image, dtype=np.float32)[None, :, :, None]
            if inp["dtype"] != np.float32:
                scale, zero = inp["quantization"]
                array = np.clip(np.round(array / scale + zero), -128, 127).astype(inp["dtype"])
            interpreter.set_tensor(inp["index"], array)
            interpreter.invoke()
            interpreter.get_tensor(outp["index"])
            times.append((time.perf_counter() - start) * 1000)
    return times


def worker(
    started_wall: float,
    cold: tuple[Any, dict[str, Any], float, float],
    cold_in_process_s: float,
    runtime: str,
    model: str,
    images_dir: str,
    repeat: int,
    batch: int,
    out: str,
) -> None:
    """The rest of one fresh process, after its first answer (``cold_start.first_answer``): warm passes, the
    floor, peak memory; writes JSON to `out`."""
    module, response, import_s, _ = cold
    if response["statusCode"] != 200:
        raise RuntimeError(f"first prediction failed: {response['body']}")
    model_path = Path(model)
    meta = json.loads((model_path.parent / "model.json").read_text())
    runtime_name = "ai-edge-litert Interpreter"
    if runtime == "tensorflow":
        runtime_name = (
            "tensorflow keras model(x)"
            if (model_path.parent / "model.keras").is_file()
            else ("tensorflow tf.lite.Interpreter")
        )
    images = sorted(p for p in Path(images_dir).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    datas = [p.read_bytes() for p in images]
    from medimage.local.apigateway import to_proxy_event
    from medimage.local.functions import LambdaContext

    def event(data: bytes) -> dict[str, Any]:
        return to_proxy_event("POST", "/predict", {"Content-Type": "image/jpeg"}, data)

    context = LambdaContext()

    def timed(events: list[dict[str, Any]]) -> tuple[list[float], list[str]]:
        times, labels = [], []
        for ev in events:
            start = time.perf_counter()
            res = module.lambda_handler(ev, context)
            times.append((time.perf_counter() - start) * 1000)
            labels.append(json.loads(res["body"])["label"])
        return times, labels

    full_events = [event(d) for d in datas]
    small_events = [event(_resized(d, 224)) for d in datas]
    timed(full_events)  # warm-up pass
    full, labels = [], []
    small: list[float] = []
    for _ in range(repeat):
        t, labels = timed(full_events)
        full += t
        small += timed(small_events)[0]
    batch_events = [full_events[i % len(full_events)] for i in range(batch)]
    start = time.perf_counter()
    timed(batch_events)
    ips = batch / (time.perf_counter() - start)
    import resource

    floor: dict[str, Any] = {}
    if runtime == "litert":
        size = int(meta["preprocess"]["image_size"])
        bare = floor_ms(model_path.parent, datas, size, repeat)
        floor = {
            "floor_p50_ms_fullres": round(_percentile(bare, 0.5), 2),
            "handler_vs_floor_p50": round(_percentile(full, 0.5) / _percentile(bare, 0.5), 3),
        }
    served_file = model_path.name
    Path(out).write_text(
        json.dumps(
            {
                "runtime": runtime_name,
                "model_file": served_file,
                **floor,
                "started_wall": started_wall,
                "cold_in_process_s": cold_in_process_s,
                "cold_import_s": round(import_s, 3),  # handler module + runtime, within cold_start_s
                "warm_p50_ms_fullres": round(_percentile(full, 0.5), 2),
                "warm_p95_ms_fullres": round(_percentile(full, 0.95), 2),
                "warm_p50_ms_224": round(_percentile(small, 0.5), 2),
                "warm_p95_ms_224": round(_percentile(small, 0.95), 2),
                "throughput_ips": round(ips, 1),
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                "images": len(datas),
                "warm_samples": len(full),
                "cpu_cores": 1,
                "labels": labels,
            }
        )
    )


def _resized(data: bytes, size: int) -> bytes:
    import io

    from PIL import Image

    image = Image.open(io.BytesIO(data))
    buf = io.BytesIO()
    image.convert("L").resize((size, size), Image.Resampling.BILINEAR).save(buf, "JPEG", quality=95)
    return buf.getvalue()


def use_tensorflow(module: Any, model_path: str | Path, dataset: str) -> str:
    """Swap the handler's model runtime for full TensorFlow; the handler code stays the same."""
    import numpy as np
    import tensorflow as tf

    from medimage.core.preprocess import PreprocessSpec
    from medimage.inference.cache import LocalModelSource, ModelCache, ServingPointer
    from medimage.inference.model import TFLiteClassifier, read_model_json
    from medimage.inference.service import InferenceService
    from medimage.inference.settings import InferenceSettings

    model_path = Path(model_path)
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    keras_file = model_path.parent / "model.keras"

    class TensorFlowClassifier:
        to_prediction = TFLiteClassifier.to_prediction

        def __init__(self, model_dir: Path, pointer: ServingPointer) -> None:
            self.meta = read_model_json(model_dir)
            self.labels = list(self.meta["labels"])
            self.spec = PreprocessSpec.from_dict(self.meta["preprocess"])
            self.sha256 = pointer.model_sha256
            if keras_file.is_file():
                self.model = tf.keras.models.load_model(keras_file, compile=False)
                self.run = lambda x: self.model(x, training=False).numpy()[0]
            else:
                interp = tf.lite.Interpreter(
                    model_content=(model_dir / pointer.model_file).read_bytes(), num_threads=1
                )
                interp.allocate_tensors()
                inp, outp = interp.get_input_details()[0], interp.get_output_details()[0]

                def run(x: np.ndarray) -> np.ndarray:
                    interp.set_tensor(inp["index"], x.astype(np.float32))
                    interp.invoke()
                    return interp.get_tensor(outp["index"])[0]

                self.run = run

        def predict_array(self, array: np.ndarray) -> np.ndarray:
            return self.run(array[None, ...])

    config = InferenceSettings.from_env()
    service = InferenceService(
        ModelCache(LocalModelSource(model_path, dataset), 3600, loader=TensorFlowClassifier), config
    )  # type: ignore[arg-type]
    module.service = lambda: service
    return "tensorflow keras model(x)" if keras_file.is_file() else "tensorflow tf.lite.Interpreter"
