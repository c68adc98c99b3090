"""The inference benchmark (``benchmarks/inference_bench.py``): the LiteRT handler against a
full-TensorFlow handler and against the bare floor, in one run.

Both handlers are the real ``functions/inference/app.py`` on real API Gateway proxy events, each in fresh
processes pinned to one CPU core, with the same decode; only the model runtime differs:

* ``litert``: what this project ships, the ai-edge-litert interpreter on the variant ``model.json`` serves
  (``model_file``: int8 when the trainer's parity check passed, else float);
* ``tensorflow``: what a full-TensorFlow Lambda ships for the same trained network: TensorFlow loads
  ``model.keras`` (beside the ``.tflite``) with Keras and calls it through a ``tf.function`` traced for one
  image, TensorFlow's fast path for single predictions.

The floor is what a prediction cannot go below on this machine: Pillow's draft-mode decode, the resize and
one LiteRT invoke of the model's int8 variant, no handler. It is timed in the LiteRT process, pass by pass
between the handler's passes, so both see the same machine; its cold start is timed right after each of the
handler's, and the two handlers' fresh processes take turns.

Cold start is what Lambda pays: the interpreter's start-up (``process_start_s``, spawn to the first line
of the fresh process) plus the handler's import, model load and first answer
(``harness.benchmarking.cold_start``: nothing of the harness is imported before the handler, so it cannot
pre-load what the handler needs). Each runtime is started ``cold_runs`` times; ``cold_start_s`` is the median,
the cold-start ratios the median of the ratios of runs that took turns (`paired_ratio`),
``cold_start_cpu_s`` the median CPU time of those processes up to their first answer (the figure that waiting
for a busy machine's cores does not inflate). The handler and the medimage package are compiled to bytecode
first, as the image's Dockerfile compiles them.
``ship_mb`` sums the installed files of the packages each image would ship (the closure of its
requirements, minus what the Lambda base image already has).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from medimage.checkout import PACKAGE_DIR
from medimage.core.images import IMAGE_SUFFIXES

HARNESS_DIR = Path(__file__).resolve().parents[1]
# The fresh processes find the harness here, after everything the handler imports (appended to sys.path).
HARNESS_ROOT = HARNESS_DIR.parent

# The Lambda Python base image already holds these (boto3 and its dependencies).
BASE_IMAGE_PACKAGES = {"boto3", "botocore", "s3transfer", "jmespath", "urllib3", "python-dateutil", "six"}
INFERENCE_REQUIREMENTS = "functions/inference/requirements.txt"
TENSORFLOW_RUNTIME = "tensorflow keras model.keras in a tf.function"
# What "serving near the floor" means, checked in every report.
TARGETS = {
    "handler_vs_floor_p50": ("max", 1.3),
    "cold_start_s": ("max", 0.15),
    "cold_start_speedup_vs_tensorflow": ("min", 20.0),
}


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def paired_ratio(numerators: list[float], denominators: list[float]) -> float:
    """The median of run-by-run ratios of two sides whose fresh processes took turns: a machine whose speed
    drifts during the run moves both sides of a pair alike, which a ratio of the two medians does not see."""
    return statistics.median(a / b for a, b in zip(numerators, denominators, strict=True))


def _dist(name: str) -> metadata.Distribution | None:
    for candidate in (name, name + "-cpu", name.replace("-", "_")):
        try:
            return metadata.distribution(candidate)
        except metadata.PackageNotFoundError:
            continue
    return None


def shipped(runtime: str) -> list[str]:
    """The packages each image installs: the inference image's requirements (the DICOM decoders included),
    with TensorFlow in place of LiteRT for the full-TensorFlow image."""
    from medimage.checkout import project_file

    names = []
    for line in project_file(INFERENCE_REQUIREMENTS).read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.append(line.split("==", 1)[0].split("[", 1)[0].strip())
    if runtime == "tensorflow":
        names = ["tensorflow" if name == "ai-edge-litert" else name for name in names]
    return names


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


def machine() -> dict[str, Any]:
    """The machine the figures belong to, and how busy it was (load average) when the run began."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "load_average_1m": round(os.getloadavg()[0], 2),
    }


def check_targets(report: dict[str, Any]) -> dict[str, Any]:
    """Each target with the figure measured in this run and whether it is met (None: not measured)."""
    litert = report.get("litert", {})
    measured = {
        "handler_vs_floor_p50": litert.get("handler_vs_floor_p50"),
        "cold_start_s": litert.get("cold_start_s"),
        "cold_start_speedup_vs_tensorflow": report.get("ratios", {}).get("cold_start_speedup_vs_tensorflow"),
    }
    checked = {}
    for name, (kind, bound) in TARGETS.items():
        value = measured[name]
        met = None if value is None else (value <= bound if kind == "max" else value >= bound)
        checked[name] = {kind: bound, "measured": value, "met": met}
    return checked


def run(
    model: str,
    images_dir: str,
    repeat: int = 5,
    batch: int = 64,
    cpu: int | None = None,
    runtimes: str = "litert,tensorflow",
    cold_runs: int = 5,
) -> dict[str, Any]:
    """Each runtime in fresh processes pinned to one core; the report ``benchmarks/inference_bench.py``
    prints."""
    images = sorted(p for p in Path(images_dir).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise FileNotFoundError(f"no JPEG/PNG images under {images_dir}")
    if cold_runs < 1:
        raise ValueError("cold_runs must be at least 1")
    cpu = cpu if cpu is not None else min(os.sched_getaffinity(0))
    model_path = Path(model).resolve()
    if model_path.is_dir():  # a model directory: the variant model.json says is served
        model_path = model_path / json.loads((model_path / "model.json").read_text())["model_file"]
    meta = json.loads((model_path.parent / "model.json").read_text())
    if "tensorflow" in runtimes.split(",") and not (model_path.parent / "model.keras").is_file():
        raise FileNotFoundError(
            f"no model.keras in {model_path.parent}: the full-TensorFlow handler serves the trained Keras "
            "network (the trainer writes it beside the .tflite files)"
        )
    dataset = str(meta.get("dataset") or "local")
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

    report: dict[str, Any] = {
        "model": {
            "dir": str(model_path.parent),
            "served": model_path.name,
            "variant": "int8" if model_path.name == meta.get("int8_model_file") else "float",
            "quantization": meta.get("quantization"),
        },
        "images": {"dir": str(images_dir), "n": len(images)},
        "machine": {**machine(), "pinned_cpu": cpu},
    }
    app = str(project_file("functions/inference/app.py"))
    report["machine"]["bytecode_compiled"] = compile_bytecode(app)
    floor_model = model_path.parent / str(meta.get("int8_model_file", "model-int8.tflite"))
    size = int(meta["preprocess"]["image_size"])
    floor_colds: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        first_event = Path(tmp) / "first_event.json"
        first = to_proxy_event("POST", "/predict", {"Content-Type": "image/jpeg"}, images[0].read_bytes())
        first_event.write_text(json.dumps(first), encoding="utf-8")
        names = runtimes.split(",")
        args = (app, first_event, model_path, dataset, images_dir, cpu, env, tmp)
        colds: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
        for attempt in range(cold_runs):
            passes = repeat if attempt == cold_runs - 1 else 0  # the last process goes on to the warm passes
            # The runtimes take turns, so that a machine that speeds up or slows down skews no ratio.
            for runtime in names:
                colds[runtime].append(_fresh_process(runtime, *args, passes, batch))
                if runtime == "litert":  # the floor's cold start beside each of the handler's
                    floor_colds.append(_floor_cold_start(floor_model, images[0], size, cpu, env))
        for runtime in names:
            result = dict(colds[runtime][-1])
            for key in ("process_start_s", "cold_import_s", "cold_start_s", "cold_start_cpu_s"):
                result[key] = round(statistics.median([c[key] for c in colds[runtime]]), 3)
            result["cold_start_runs_s"] = [c["cold_start_s"] for c in colds[runtime]]
            shipped_bytes, packages = ship_bytes(shipped(runtime))
            result["ship_mb"] = round(shipped_bytes / 1e6, 1)
            result["ship_packages"] = packages
            report[runtime] = result
    if "litert" in report:
        report["floor"] = report["litert"].pop("floor")
        report["floor"]["cold_start_s"] = round(statistics.median(floor_colds), 3)
        report["floor"]["cold_start_runs_s"] = floor_colds
        report["floor"]["cold_start_what"] = FLOOR_COLD_START
    if "litert" in report and "tensorflow" in report:
        litert, tf = report["litert"], report["tensorflow"]
        a, b = litert.pop("labels"), tf.pop("labels")
        litert["label_agreement_with_tensorflow"] = round(
            sum(x == y for x, y in zip(a, b, strict=True)) / len(a), 4
        )
        litert["cold_start_speedup_vs_tensorflow"] = round(
            paired_ratio(tf["cold_start_runs_s"], litert["cold_start_runs_s"]), 1
        )
        for key, name in (
            ("warm_p50_ms_fullres", "warm_p50"),
            ("peak_rss_mb", "peak_rss"),
            ("ship_mb", "ship"),
        ):
            litert[f"{name}_ratio_vs_tensorflow"] = round(litert[key] / tf[key], 3)
    for name in ("litert", "tensorflow"):
        report.get(name, {}).pop("labels", None)
    ratios: dict[str, Any] = {}
    if "litert" in report:
        ratios["handler_vs_floor_p50"] = report["litert"]["handler_vs_floor_p50"]
        floor = report["floor"]
        api_floor = floor["p50_ms_fullres"] + floor["api_base64_p50_ms"]
        ratios["handler_vs_floor_plus_base64_p50"] = round(
            report["litert"]["warm_p50_ms_fullres"] / api_floor, 3
        )
        ratios["cold_start_vs_floor"] = round(
            paired_ratio(report["litert"]["cold_start_runs_s"], report["floor"]["cold_start_runs_s"]), 3
        )
    if "litert" in report and "tensorflow" in report:
        litert, tf = report["litert"], report["tensorflow"]
        ratios["cold_start_speedup_vs_tensorflow"] = litert["cold_start_speedup_vs_tensorflow"]
        # What the bare floor would reach against the same TensorFlow runs: the bound on the speed-up.
        ratios["floor_cold_start_speedup_vs_tensorflow"] = round(
            paired_ratio(tf["cold_start_runs_s"], report["floor"]["cold_start_runs_s"]), 1
        )
        ratios["warm_p50_speedup_vs_tensorflow"] = round(
            tf["warm_p50_ms_fullres"] / litert["warm_p50_ms_fullres"], 2
        )
        ratios["peak_rss_ratio_vs_tensorflow"] = litert["peak_rss_ratio_vs_tensorflow"]
        ratios["ship_ratio_vs_tensorflow"] = litert["ship_ratio_vs_tensorflow"]
    report["ratios"] = ratios
    report["targets"] = check_targets(report)
    report["machine"]["load_average_1m_after"] = round(os.getloadavg()[0], 2)
    return report


def compile_bytecode(app: str) -> bool:
    """Compile the handler and the medimage package to bytecode, as the inference image's Dockerfile does
    (``compileall``), so that a cold start here does not compile source that Lambda never compiles; where
    ``PYTHONDONTWRITEBYTECODE`` is set, nothing else would. The harness is compiled too: its cold-start
    module is imported inside the timed window. False when the tree is not writable."""
    import compileall

    return bool(
        compileall.compile_dir(str(PACKAGE_DIR), quiet=1)
        and compileall.compile_dir(str(HARNESS_DIR), quiet=1)
        and compileall.compile_file(app, quiet=1)
    )


def _fresh_process(
    runtime: str,
    app: str,
    first_event: Path,
    model_path: Path,
    dataset: str,
    images_dir: str,
    cpu: int,
    env: dict[str, str],
    tmp: str,
    repeat: int,
    batch: int,
) -> dict[str, Any]:
    """One fresh interpreter: the handler's cold start, then (``repeat`` > 0) the warm passes and floor."""
    out = Path(tmp) / f"{runtime}-{time.monotonic_ns()}.json"
    prepare = "None"
    if runtime == "tensorflow":
        prepare = (
            "lambda m: __import__('harness.benchmarking.inference', fromlist=['x'])"
            f".use_tensorflow(m, {str(model_path)!r}, {dataset!r})"
        )
    code = (
        "import time; t0 = time.perf_counter(); w0 = time.time(); import os, sys; "
        f"os.sched_setaffinity(0, {{{cpu}}}); sys.path.append({str(HARNESS_ROOT)!r}); "
        "from harness.benchmarking.cold_start import first_answer; "
        f"cold = first_answer({app!r}, {str(first_event)!r}, {prepare}); "
        "cold_s = time.perf_counter() - t0; cold_cpu_s = time.process_time(); "
        "from harness.benchmarking.inference import worker; "
        f"worker(w0, cold, (cold_s, cold_cpu_s), {runtime!r}, {str(model_path)!r}, {images_dir!r}, "
        f"{repeat}, {batch}, {str(out)!r})"
    )
    spawned = time.time()
    proc = subprocess.run(
        [sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{runtime} benchmark failed:\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.read_text())
    result["process_start_s"] = round(result.pop("started_wall") - spawned, 3)
    result["cold_start_s"] = round(result["process_start_s"] + result.pop("cold_in_process_s"), 3)
    return result


FLOOR_COLD_START = (
    "a fresh interpreter that imports only numpy, Pillow and LiteRT, loads the int8 model and answers the "
    "first image (decode + invoke): spawn to answer"
)
_FLOOR_COLD_CODE = """
import time
t0 = time.perf_counter()
import io, os, sys
os.sched_setaffinity(0, {{{cpu}}})
import numpy as np
from PIL import Image
from ai_edge_litert.interpreter import Interpreter
interpreter = Interpreter(model_path={model!r}, num_threads=1)
interpreter.allocate_tensors()
detail_in, detail_out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
image = Image.open(io.BytesIO(open({image!r}, "rb").read()))
image.draft("L", ({size}, {size}))
array = np.asarray(image.convert("L").resize(({size}, {size}), Image.Resampling.BILINEAR), np.float32)
array = array[None, :, :, None]
if detail_in["dtype"] != np.float32:
    scale, zero = detail_in["quantization"]
    array = np.clip(np.round(array / scale + zero), -128, 127).astype(detail_in["dtype"])
interpreter.set_tensor(detail_in["index"], array)
interpreter.invoke()
interpreter.get_tensor(detail_out["index"])
print(time.time(), time.perf_counter() - t0)
"""


def _floor_cold_start(model: Path, image: Path, size: int, cpu: int, env: dict[str, str]) -> float:
    """Seconds from spawning a fresh interpreter to the bare floor's first answer (`FLOOR_COLD_START`)."""
    code = _FLOOR_COLD_CODE.format(cpu=cpu, model=str(model), image=str(image), size=size)
    spawned = time.time()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"floor cold start failed:\n{proc.stderr[-3000:]}")
    answered_wall, in_process = (float(v) for v in proc.stdout.split()[-2:])
    started_wall = answered_wall - in_process
    return round(started_wall - spawned + in_process, 3)


class Floor:
    """The bare floor of one prediction, no handler: Pillow draft-mode decode and resize, then one LiteRT
    invoke of the int8 variant (``model.json``'s ``int8_model_file``); decode and invoke timed apart."""

    def __init__(self, model_dir: Path, size: int) -> None:
        from ai_edge_litert.interpreter import Interpreter

        meta = json.loads((model_dir / "model.json").read_text())
        self.model_file = str(meta.get("int8_model_file", "model-int8.tflite"))
        self.size = size
        self.interpreter = Interpreter(
            model_content=(model_dir / self.model_file).read_bytes(), num_threads=1
        )
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        self.decode_ms: list[float] = []
        self.invoke_ms: list[float] = []
        self.total_ms: list[float] = []
        self.base64_ms: list[float] = []
        self.base64_stdlib_ms: list[float] = []

    def reset(self) -> None:
        self.decode_ms, self.invoke_ms, self.total_ms = [], [], []
        self.base64_ms, self.base64_stdlib_ms = [], []

    def measure(self, datas: list[bytes]) -> None:
        import base64
        import binascii
        import io

        import numpy as np
        from PIL import Image

        from medimage.inference.api import decode_base64

        size = self.size
        for data in datas:
            # What API Gateway's encoding of a binary body costs the handler (its own decoder) and a handler
            # that decodes with the standard library, timed apart from the floor.
            text = base64.b64encode(data).decode("ascii")
            start = time.perf_counter()
            decode_base64(text, "body")
            decoded_handler = time.perf_counter()
            binascii.a2b_base64(text, strict_mode=True)
            self.base64_ms.append((decoded_handler - start) * 1000)
            self.base64_stdlib_ms.append((time.perf_counter() - decoded_handler) * 1000)
            start = time.perf_counter()
            image = Image.open(io.BytesIO(data))
            image.draft("L", (size, size))
            image = image.convert("L").resize((size, size), Image.Resampling.BILINEAR)
            array = np.asarray(image, dtype=np.float32)[None, :, :, None]
            decoded = time.perf_counter()
            if self.input["dtype"] != np.float32:
                scale, zero = self.input["quantization"]
                array = np.clip(np.round(array / scale + zero), -128, 127).astype(self.input["dtype"])
            self.interpreter.set_tensor(self.input["index"], array)
            self.interpreter.invoke()
            self.interpreter.get_tensor(self.output["index"])
            done = time.perf_counter()
            self.decode_ms.append((decoded - start) * 1000)
            self.invoke_ms.append((done - decoded) * 1000)
            self.total_ms.append((done - start) * 1000)

    def report(self) -> dict[str, Any]:
        return {
            "what": "Pillow draft decode + resize + one LiteRT invoke, no handler",
            "model_file": self.model_file,
            "p50_ms_fullres": round(_percentile(self.total_ms, 0.5), 2),
            "p95_ms_fullres": round(_percentile(self.total_ms, 0.95), 2),
            "decode_p50_ms": round(_percentile(self.decode_ms, 0.5), 2),
            "invoke_p50_ms": round(_percentile(self.invoke_ms, 0.5), 3),
            "api_base64_p50_ms": round(_percentile(self.base64_ms, 0.5), 3),
            "api_base64_stdlib_p50_ms": round(_percentile(self.base64_stdlib_ms, 0.5), 3),
            "samples": len(self.total_ms),
        }


def worker(
    started_wall: float,
    cold: tuple[Any, dict[str, Any], float, float],
    cold_in_process: tuple[float, float],
    runtime: str,
    model: str,
    images_dir: str,
    repeat: int,
    batch: int,
    out: str,
) -> None:
    """The rest of one fresh process, after its first answer (``cold_start.first_answer``): with ``repeat``
    > 0 the warm passes (LiteRT: each followed by a pass of the floor), throughput and peak memory; writes
    JSON to `out`."""
    module, response, import_s, _ = cold
    if response["statusCode"] != 200:
        raise RuntimeError(f"first prediction failed: {response['body']}")
    served = json.loads(response["body"])
    result: dict[str, Any] = {
        "started_wall": started_wall,
        "cold_in_process_s": cold_in_process[0],
        # CPU of the whole process (interpreter start-up included) up to its first answer: what the cold
        # start costs on a machine that other work also loads, where the wall clock includes waiting.
        "cold_start_cpu_s": round(cold_in_process[1], 3),
        "cold_import_s": round(import_s, 3),  # handler module + runtime, within cold_start_s
    }
    if repeat > 0:
        result.update(_warm(module, runtime, Path(model), images_dir, repeat, batch))
        result["first_answer_label"] = served.get("label")
    Path(out).write_text(json.dumps(result))


def _warm(
    module: Any, runtime: str, model_path: Path, images_dir: str, repeat: int, batch: int
) -> dict[str, Any]:
    import resource

    from medimage.local.apigateway import to_proxy_event
    from medimage.local.functions import LambdaContext

    meta = json.loads((model_path.parent / "model.json").read_text())
    images = sorted(p for p in Path(images_dir).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    datas = [p.read_bytes() for p in images]

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
    floor = Floor(model_path.parent, int(meta["preprocess"]["image_size"])) if runtime == "litert" else None
    timed(full_events)  # warm-up pass
    if floor is not None:
        floor.measure(datas)  # its warm-up pass, not counted
        floor.reset()
    full, labels = [], []
    small: list[float] = []
    for _ in range(repeat):
        t, labels = timed(full_events)
        full += t
        if floor is not None:
            floor.measure(datas)
        small += timed(small_events)[0]
    batch_events = [full_events[i % len(full_events)] for i in range(batch)]
    start = time.perf_counter()
    timed(batch_events)
    ips = batch / (time.perf_counter() - start)
    figures: dict[str, Any] = {
        "runtime": TENSORFLOW_RUNTIME if runtime == "tensorflow" else "ai-edge-litert Interpreter",
        "model_file": "model.keras" if runtime == "tensorflow" else model_path.name,
    }
    if floor is not None:
        bare = floor.report()
        figures["floor"] = bare
        figures["floor_p50_ms_fullres"] = bare["p50_ms_fullres"]
        figures["handler_vs_floor_p50"] = round(_percentile(full, 0.5) / bare["p50_ms_fullres"], 3)
    figures.update(
        {
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
    return figures


def _resized(data: bytes, size: int) -> bytes:
    import io

    from PIL import Image

    image = Image.open(io.BytesIO(data))
    buf = io.BytesIO()
    image.convert("L").resize((size, size), Image.Resampling.BILINEAR).save(buf, "JPEG", quality=95)
    return buf.getvalue()


def use_tensorflow(module: Any, model_path: str | Path, dataset: str) -> str:
    """Swap the handler's model runtime for full TensorFlow serving the trained Keras network; the handler
    code, the decode and the answer stay the same."""
    import numpy as np
    import tensorflow as tf

    from medimage.core.preprocess import PreprocessSpec
    from medimage.inference.cache import LocalModelSource, ModelCache, ServingPointer
    from medimage.inference.model import (
        TFLiteClassifier,
        input_profile_of,
        read_model_json,
        review_threshold_of,
    )
    from medimage.inference.service import InferenceService
    from medimage.inference.settings import InferenceSettings

    model_path = Path(model_path)
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    keras_file = model_path.parent / "model.keras"

    class TensorFlowClassifier:
        classify_array = TFLiteClassifier.classify_array
        to_prediction = TFLiteClassifier.to_prediction

        def __init__(self, model_dir: Path, pointer: ServingPointer) -> None:
            self.meta = read_model_json(model_dir)
            self.labels = list(self.meta["labels"])
            self.spec = PreprocessSpec.from_dict(self.meta["preprocess"])
            self.sha256 = pointer.model_sha256
            self.review_threshold = review_threshold_of(self.meta)
            self.input_profile = input_profile_of(self.meta)
            network = tf.keras.models.load_model(keras_file, compile=False)
            shape = (1, self.spec.image_size, self.spec.image_size, self.spec.channels)

            @tf.function(input_signature=[tf.TensorSpec(shape, tf.float32)])
            def serve(x: tf.Tensor) -> Any:
                return network(x, training=False)

            self.serve = serve

        def _probabilities(self, array: np.ndarray) -> np.ndarray:
            outputs = self.serve(tf.constant(array[None, ...], dtype=tf.float32))
            if isinstance(outputs, (list, tuple)):  # the class-activation maps ride along as a second output
                outputs = next(o for o in outputs if len(o.shape) == 2)
            return np.asarray(outputs)[0]

        def run(self, array: np.ndarray, explain: bool = False) -> tuple[np.ndarray, None]:
            return self._probabilities(array), None

    config = InferenceSettings.from_env()
    service = InferenceService(
        ModelCache(LocalModelSource(model_path, dataset), 3600, loader=TensorFlowClassifier),  # type: ignore[arg-type]
        config,
    )
    module.service = lambda: service
    return TENSORFLOW_RUNTIME
