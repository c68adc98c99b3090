"""SageMaker script-mode entry point: ``python train.py --preset NAME [--epochs N ...]``.

Channels come from ``SM_CHANNEL_TRAIN`` / ``SM_CHANNEL_VALIDATION`` / ``SM_CHANNEL_TEST``, the model
goes to ``SM_MODEL_DIR`` and plots to ``SM_OUTPUT_DATA_DIR`` (see docs/CONTRACTS.md). The logic lives
in ``medimage.training``: ``script_mode.main`` reads that contract and runs ``trainer.train``. In a
SageMaker container the ``medimage`` package is shipped in the source directory beside this file (or in
``../src`` of a checkout), so both are put on ``sys.path`` when the package is not installed.
"""

from __future__ import annotations

import sys
from pathlib import Path


def _make_medimage_importable() -> None:
    try:
        import medimage  # noqa: F401
    except ImportError:
        here = Path(__file__).resolve().parent
        for candidate in (here, here.parent / "src"):
            if (candidate / "medimage" / "__init__.py").is_file():
                sys.path.insert(0, str(candidate))
                return


if __name__ == "__main__":
    _make_medimage_importable()
    from medimage.training.script_mode import main

    sys.exit(main())
