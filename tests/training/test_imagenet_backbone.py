"""`--weights imagenet` without the internet: the backbone's path is tested with the same architecture built
without its download, and a failed download is one clear error line (SageMaker has the internet; this
machine and CI do not)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from medimage.core.presets import get_preset
from medimage.training import contract, script_mode, trainer
from medimage.training.runner import scan_tree, write_channels

pytestmark = pytest.mark.slow


def _arguments(tmp_path: Path, tree_maker: Callable[..., Path]) -> tuple[list[str], dict[str, str]]:
    tree = tree_maker(tmp_path / "tree", per_class=12, size=32)
    channels = write_channels(scan_tree(tree, get_preset("folders")), tmp_path / "channels")
    env = {f"SM_CHANNEL_{name.upper()}": str(path) for name, path in channels.items()}
    env |= {"SM_MODEL_DIR": str(tmp_path / "model"), "SM_OUTPUT_DATA_DIR": str(tmp_path / "output")}
    argv = [
        "--preset",
        "folders",
        "--weights",
        "imagenet",
        "--epochs",
        "1",
        "--image-size",
        "32",
        "--batch-size",
        "8",
        "--int8-calibration-images",
        "8",
    ]
    return argv, env


def test_imagenet_backbone_trains_and_exports_on_grayscale(
    tmp_path: Path, tree_maker: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import keras

    # GIVEN MobileNetV3Small as SageMaker would build it, minus the weight download
    real = keras.applications.MobileNetV3Small
    asked: list[Any] = []

    def offline(**kwargs: Any) -> Any:
        asked.append(kwargs["weights"])
        return real(**{**kwargs, "weights": None})

    monkeypatch.setattr(keras.applications, "MobileNetV3Small", offline)
    argv, env = _arguments(tmp_path, tree_maker)

    # WHEN the trainer runs with --weights imagenet on one-channel images
    config, paths, _ = contract.parse(argv, env)
    evaluation = trainer.train(config, paths, log=lambda line: None)

    # THEN it asked for the ImageNet weights, and the exported models serve what Keras computes
    assert asked == ["imagenet"]
    meta = json.loads((tmp_path / "model" / "model.json").read_text())
    assert meta["architecture"] == "medimage_mobilenetv3"
    assert meta["preprocess"]["channels"] == 1
    assert meta["export_checks"]["float"]["top1_agreement"] == 1.0
    assert meta["export_checks"]["float"]["max_abs_diff"] <= 1e-3
    assert (tmp_path / "model" / "model-int8.tflite").stat().st_size > 0
    assert evaluation["test"]["n"] > 0


def test_failed_weight_download_is_one_clear_error(
    tmp_path: Path,
    tree_maker: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import keras

    # GIVEN no route to the weights
    def unreachable(**kwargs: Any) -> Any:
        raise OSError("[Errno 101] Network is unreachable")

    monkeypatch.setattr(keras.applications, "MobileNetV3Small", unreachable)
    argv, env = _arguments(tmp_path, tree_maker)

    # WHEN train.py runs with --weights imagenet
    code = script_mode.main(argv, env)

    # THEN it exits 2 with one line that names the cause and the way out, and no traceback
    assert code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "cannot load ImageNet weights for MobileNetV3Small (OSError" in err
    assert "train without them with --weights none" in err
