"""The bare floor of one prediction, no handler: what a prediction cannot go below on this machine, warm
(`Floor`, timed inside the LiteRT process between the handler's passes) and cold (`floor_cold_start`, a
fresh interpreter that imports only numpy, Pillow and LiteRT)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from harness.benchmarking.figures import percentile

FLOOR_COLD_START = (
    "a fresh interpreter that imports only numpy, Pillow and LiteRT, loads the served model and answers the "
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


def floor_cold_start(model: Path, image: Path, size: int, cpu: int, env: dict[str, str]) -> float:
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
    invoke of the variant the handler serves (``model.json``'s ``model_file``: a model's own floor);
    decode and invoke timed apart."""

    def __init__(self, model_dir: Path, size: int) -> None:
        from ai_edge_litert.interpreter import Interpreter

        meta = json.loads((model_dir / "model.json").read_text())
        self.model_file = str(meta.get("model_file", "model.tflite"))
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
            "p50_ms_fullres": round(percentile(self.total_ms, 0.5), 2),
            "p95_ms_fullres": round(percentile(self.total_ms, 0.95), 2),
            "decode_p50_ms": round(percentile(self.decode_ms, 0.5), 2),
            "invoke_p50_ms": round(percentile(self.invoke_ms, 0.5), 3),
            "api_base64_p50_ms": round(percentile(self.base64_ms, 0.5), 3),
            "api_base64_stdlib_p50_ms": round(percentile(self.base64_stdlib_ms, 0.5), 3),
            "samples": len(self.total_ms),
        }
