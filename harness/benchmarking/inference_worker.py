"""The part of the inference benchmark that runs inside each fresh process, after its first answer: the
warm passes, the floor between them, throughput and peak memory. Imported only after the cold start is
timed, so nothing here can pre-load what the handler needs."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from harness.benchmarking.figures import percentile
from harness.benchmarking.floor import Floor
from harness.benchmarking.tensorflow_runtime import TENSORFLOW_RUNTIME
from medimage.core.label_tree import image_files


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
    images = image_files(Path(images_dir))
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
        figures["handler_vs_floor_p50"] = round(percentile(full, 0.5) / bare["p50_ms_fullres"], 3)
    figures.update(
        {
            "warm_p50_ms_fullres": round(percentile(full, 0.5), 2),
            "warm_p95_ms_fullres": round(percentile(full, 0.95), 2),
            "warm_p50_ms_224": round(percentile(small, 0.5), 2),
            "warm_p95_ms_224": round(percentile(small, 0.95), 2),
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
