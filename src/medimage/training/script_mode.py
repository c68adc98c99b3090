"""The script-mode entry point: parse the run contract, run the trainer, report a failure to SageMaker.

Kept out of ``medimage.training.contract`` because the trainer's stages import the contract: the
contract stays a leaf and only this module knows the trainer. ``training/train.py`` calls ``main``; on
error one line goes to stderr and to ``$SM_OUTPUT_DIR/failure`` (SageMaker's FailureReason).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from medimage.core.errors import MedimageError
from medimage.training.contract import Paths, parse
from medimage.training.trainer import train


def _write_failure(paths: Paths | None, message: str) -> None:
    if paths is not None and paths.failure_dir is not None:
        try:
            paths.failure_dir.mkdir(parents=True, exist_ok=True)
            (paths.failure_dir / "failure").write_text(message + "\n", encoding="utf-8")
        except OSError:
            pass


def main(argv: Sequence[str] | None = None, env: dict[str, str] | None = None) -> int:
    """Entry point: a one-line error on stderr and a non-zero exit for any bad input, never a traceback."""
    argv = sys.argv[1:] if argv is None else argv
    env = dict(os.environ) if env is None else env
    paths: Paths | None = None
    try:
        config, paths, ignored = parse(argv, env)
        if ignored:
            print(f"ignoring hyperparameters this trainer does not use: {' '.join(ignored)}", flush=True)
        train(config, paths, log=lambda line: print(line, flush=True))
        return 0
    except (MedimageError, ValueError, OSError) as exc:
        message = f"train.py: error: {exc}"
        code = 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a bug or an environment problem: still one readable line, plus the traceback
        import traceback

        traceback.print_exc()
        message = f"train.py: error: unexpected {type(exc).__name__}: {exc}"
        code = 1
    print(message, file=sys.stderr, flush=True)
    _write_failure(paths, message)
    return code
