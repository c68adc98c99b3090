"""One resolver of the TFLite interpreter: LiteRT for serving, TensorFlow's only when the caller allows it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from medimage.inference.model import resolve_interpreter

# Each case runs in a fresh process: hiding the runtimes or importing TensorFlow leaves this one alone.
_WITHOUT_RUNTIMES = (
    "import json, sys\n"
    "sys.modules['ai_edge_litert.interpreter'] = None\n"
    "sys.modules['tflite_runtime'] = None\n"
    "sys.modules['tflite_runtime.interpreter'] = None\n"
    "from medimage.inference.model import resolve_interpreter\n"
)


def _run(script: str) -> object:
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120, check=True)
    return json.loads(done.stdout.decode().strip().splitlines()[-1])


def test_serving_gets_litert() -> None:
    from ai_edge_litert.interpreter import Interpreter

    assert resolve_interpreter() is Interpreter


def test_without_a_runtime_serving_fails_without_importing_tensorflow() -> None:
    # GIVEN neither LiteRT nor tflite-runtime
    script = _WITHOUT_RUNTIMES + (
        "try:\n"
        "    resolve_interpreter()\n"
        "    failed = False\n"
        "except ImportError:\n"
        "    failed = True\n"
        "print(json.dumps([failed, 'tensorflow' in sys.modules]))\n"
    )
    # WHEN serving resolves the interpreter THEN it gets the ImportError, and TensorFlow stays unimported
    assert _run(script) == [True, False]


@pytest.mark.slow
def test_without_a_runtime_the_trainer_gets_tensorflows_interpreter() -> None:
    pytest.importorskip("tensorflow")
    # GIVEN neither LiteRT nor tflite-runtime, WHEN the trainer allows TensorFlow
    script = _WITHOUT_RUNTIMES + (
        "import tensorflow as tf\n"
        "print(json.dumps(resolve_interpreter(allow_tensorflow=True) is tf.lite.Interpreter))\n"
    )
    # THEN it gets tf.lite.Interpreter
    assert _run(script) is True
