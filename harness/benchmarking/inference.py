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
one LiteRT invoke of the variant the handler serves, no handler. It is timed in the LiteRT process, pass
by pass between the handler's passes, so both see the same machine; its cold start is timed right after
each of the handler's, and the two handlers' fresh processes take turns.

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

This module starts the fresh processes and assembles the report; each other part has a module of its own:
``figures`` (percentiles, ratios, targets), ``footprint`` (shipped size, machine), ``floor``,
``inference_worker`` (what runs in each fresh process after its first answer) and ``tensorflow_runtime``.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from harness.benchmarking.figures import check_targets, paired_ratio
from harness.benchmarking.floor import FLOOR_COLD_START, floor_cold_start
from harness.benchmarking.footprint import machine, ship_bytes, shipped
from medimage.checkout import PACKAGE_DIR
from medimage.core.label_tree import image_files

HARNESS_DIR = Path(__file__).resolve().parents[1]
# The fresh processes find the harness here, after everything the handler imports (appended to sys.path).
HARNESS_ROOT = HARNESS_DIR.parent


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
    images = image_files(Path(images_dir))
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
    floor_model = model_path  # the served variant: the handler is judged against its own model's floor
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
                    floor_colds.append(floor_cold_start(floor_model, images[0], size, cpu, env))
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
            "lambda m: __import__('harness.benchmarking.tensorflow_runtime', fromlist=['x'])"
            f".use_tensorflow(m, {str(model_path)!r}, {dataset!r})"
        )
    code = (
        "import time; t0 = time.perf_counter(); w0 = time.time(); import os, sys; "
        f"os.sched_setaffinity(0, {{{cpu}}}); sys.path.append({str(HARNESS_ROOT)!r}); "
        "from harness.benchmarking.cold_start import first_answer; "
        f"cold = first_answer({app!r}, {str(first_event)!r}, {prepare}); "
        "cold_s = time.perf_counter() - t0; cold_cpu_s = time.process_time(); "
        "from harness.benchmarking.inference_worker import worker; "
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
