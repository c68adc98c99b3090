"""The MobileNetV2 backbone starts from ImageNet weights wherever the job runs: Keras' download where there is
internet (SageMaker), else a file, the 'pretrained' channel or $MEDIMAGE_PRETRAINED_DIR (this machine, CI,
network-isolated jobs); a source that is named but unusable is one clear error."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness.models import tiny_tflite_model
from medimage.core.presets import get_preset
from medimage.training import contract, pretrained, script_mode, trainer
from medimage.training.data import TrainingInputError
from medimage.training.runner import scan_tree, write_channels

MOBILENET_FILE = "tf2_mobilenet_v2_1.0_224_ptq.tflite"


def _arguments(
    tmp_path: Path, tree_maker: Callable[..., Path], *extra: str
) -> tuple[list[str], dict[str, str]]:
    tree = tree_maker(tmp_path / "tree", per_class=12, size=32)
    channels = write_channels(scan_tree(tree, get_preset("folders")), tmp_path / "channels")
    env = {f"SM_CHANNEL_{name.upper()}": str(path) for name, path in channels.items()}
    env |= {"SM_MODEL_DIR": str(tmp_path / "model"), "SM_OUTPUT_DATA_DIR": str(tmp_path / "output")}
    argv = [
        "--preset",
        "folders",
        "--backbone",
        "mobilenetv2",
        "--epochs",
        "1",
        "--image-size",
        "32",
        "--batch-size",
        "8",
        "--int8-calibration-images",
        "8",
        *extra,
    ]
    return argv, env


@pytest.fixture
def no_download(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keras cannot fetch its weights (as on this machine and in CI, made certain)."""
    monkeypatch.setattr(pretrained, "keras_download", lambda image_size: False)
    monkeypatch.delenv(pretrained.PRETRAINED_DIR_ENV, raising=False)
    monkeypatch.delenv(pretrained.PRETRAINED_CHANNEL_ENV, raising=False)


@pytest.fixture
def weight_file(real_data: Callable[[str], Path]) -> Path:
    return real_data("pretrained") / MOBILENET_FILE


# ---------------------------------------------------------------- where the weights come from


def test_sources_are_tried_in_order_file_channel_download_folder(tmp_path: Path) -> None:
    # GIVEN a weight file in three places
    for name in ("given", "channel", "folder"):
        (tmp_path / name).mkdir()
        (tmp_path / name / MOBILENET_FILE).write_bytes(b"x")
    env = {
        pretrained.PRETRAINED_CHANNEL_ENV: str(tmp_path / "channel"),
        pretrained.PRETRAINED_DIR_ENV: str(tmp_path / "folder"),
    }
    online, offline = (lambda size: True), (lambda size: False)

    # THEN a given file wins, then the channel, then Keras' download, then the folder
    assert pretrained.resolve_source(str(tmp_path / "given"), env, 160, online).kind == "file"
    assert pretrained.resolve_source("", env, 160, online).kind == "channel"
    no_channel = {pretrained.PRETRAINED_DIR_ENV: str(tmp_path / "folder")}
    assert pretrained.resolve_source("", no_channel, 160, online).kind == "keras-download"
    folder = pretrained.resolve_source("", no_channel, 160, offline)
    assert (folder.kind, folder.path) == ("pretrained-dir", tmp_path / "folder" / MOBILENET_FILE)
    # Keras publishes no weights for 200 px: the folder is used without trying to download
    assert pretrained.resolve_source("", no_channel, 200, online).kind == "pretrained-dir"


def test_no_source_at_all_is_one_clear_error() -> None:
    with pytest.raises(TrainingInputError) as caught:
        pretrained.resolve_source("", {}, 160, lambda size: False)
    message = str(caught.value)
    assert "Keras could not download them" in message
    assert "--pretrained-weights" in message and pretrained.PRETRAINED_DIR_ENV in message
    assert "--weights none" in message


def test_a_named_but_missing_source_is_an_error_not_a_fall_back(tmp_path: Path) -> None:
    env = {pretrained.PRETRAINED_CHANNEL_ENV: str(tmp_path / "empty-channel")}
    (tmp_path / "empty-channel").mkdir()
    with pytest.raises(TrainingInputError, match=r"no ImageNet MobileNetV2 weights at \S*empty-channel"):
        pretrained.resolve_source("", env, 160, lambda size: True)


def test_a_file_that_is_not_mobilenet_v2_is_refused(tmp_path: Path) -> None:
    backbone = pretrained.mobilenet_v2(32)
    not_tflite = tmp_path / "weights.tflite"
    not_tflite.write_bytes(b"PK\x03\x04 a zip, not a flatbuffer")
    with pytest.raises(TrainingInputError, match="is not a readable TFLite model"):
        pretrained.load_tflite_weights(backbone, not_tflite)
    small = tmp_path / "small.tflite"
    small.write_bytes(tiny_tflite_model())
    with pytest.raises(
        TrainingInputError, match="is not an ImageNet MobileNetV2: 1 convolutions, the network has 52"
    ):
        pretrained.load_tflite_weights(backbone, small)


# ---------------------------------------------------------------- the real weights


def _photos() -> list[Path]:
    skimage = pytest.importorskip("skimage")
    folder = Path(skimage.__file__).parent / "data"
    return [
        folder / name for name in ("chelsea.png", "coffee.png", "rocket.jpg", "astronaut.png", "camera.png")
    ]


def test_converted_backbone_names_photographs_as_the_source_file_does(weight_file: Path) -> None:
    import keras
    from ai_edge_litert.interpreter import Interpreter
    from PIL import Image

    # GIVEN the Keras network with the file's weights, ImageNet head included
    backbone = pretrained.mobilenet_v2(224)
    inputs = keras.Input((224, 224, 3))
    x = keras.layers.Rescaling(1.0 / 127.5, offset=-1.0)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(backbone(x))
    head = keras.layers.Dense(1001, activation="softmax")
    network = keras.Model(inputs, head(x))
    assert pretrained.load_tflite_weights(backbone, weight_file, classifier=head) == 52
    source = Interpreter(model_path=str(weight_file))
    source.allocate_tensors()
    entry, exit_ = source.get_input_details()[0], source.get_output_details()[0]

    # WHEN both classify the same photographs
    labels = (weight_file.parent / "imagenet_labels.txt").read_text().splitlines()
    named = []
    for photo in _photos():
        pixels = np.asarray(Image.open(photo).convert("RGB").resize((224, 224)), dtype=np.uint8)
        source.set_tensor(entry["index"], pixels[None])
        source.invoke()
        expected = int(source.get_tensor(exit_["index"])[0].argmax())
        got = network.predict(pixels[None].astype(np.float32), verbose=0)[0]
        named.append((labels[expected], labels[int(got.argmax())]))

    # THEN they agree on every top-1 class, and the classes are the photographs' own
    assert all(expected == got for expected, got in named), named
    assert [got for _, got in named][:3] == ["Egyptian cat", "espresso", "missile"]


@pytest.mark.slow
def test_without_the_internet_the_default_weights_come_from_the_pretrained_folder(
    tmp_path: Path,
    tree_maker: Callable[..., Path],
    weight_file: Path,
    no_download: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN no internet, and MEDIMAGE_PRETRAINED_DIR set as the Makefile and CI set it
    monkeypatch.setenv(pretrained.PRETRAINED_DIR_ENV, str(weight_file.parent))
    argv, env = _arguments(tmp_path, tree_maker)
    lines: list[str] = []

    # WHEN the trainer runs on one-channel images with no weight option
    config, paths, _ = contract.parse(argv, env)
    evaluation = trainer.train(config, paths, log=lines.append)

    # THEN one line says which weights it started from, and the exports serve what Keras computes
    started = [line for line in lines if line.startswith("starting weights:")]
    assert started == [f"starting weights: ImageNet MobileNetV2 weights from pretrained-dir {weight_file}"]
    meta = json.loads((tmp_path / "model" / "model.json").read_text())
    assert meta["architecture"] == "medimage_mobilenetv2"
    assert meta["hyperparameters"]["backbone"] == "mobilenetv2"
    assert meta["export_checks"]["float"]["top1_agreement"] == 1.0
    assert evaluation["test"]["n"] > 0


@pytest.mark.slow
def test_where_keras_can_download_it_starts_from_keras_weights(
    tmp_path: Path, tree_maker: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import keras

    # GIVEN a job with the internet (Keras' MobileNetV2 built as it would be, minus the transfer)
    real = keras.applications.MobileNetV2
    asked: list[Any] = []

    def downloaded(**kwargs: Any) -> Any:
        asked.append(kwargs["weights"])
        return real(**{**kwargs, "weights": None})

    monkeypatch.setattr(keras.applications, "MobileNetV2", downloaded)
    monkeypatch.delenv(pretrained.PRETRAINED_CHANNEL_ENV, raising=False)
    argv, env = _arguments(tmp_path, tree_maker)
    lines: list[str] = []

    # WHEN the trainer runs at a size Keras publishes weights for
    config, paths, _ = contract.parse([*argv, "--image-size", "96"], env)
    trainer.train(config, paths, log=lines.append)

    # THEN it asked Keras for the ImageNet weights and says so
    assert "imagenet" in asked
    assert "starting weights: ImageNet MobileNetV2 weights from keras-download" in lines


def test_failed_weight_sources_are_one_clear_error_line(
    tmp_path: Path, tree_maker: Callable[..., Path], no_download: None, capsys: pytest.CaptureFixture[str]
) -> None:
    argv, env = _arguments(tmp_path, tree_maker)

    # WHEN train.py runs with no route to any weights
    code = script_mode.main(argv, env)

    # THEN it exits 2 with one line that names the way out, and no traceback
    assert code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "cannot load ImageNet weights for MobileNetV2" in err
    assert "--weights none" in err


def test_imagenet_weights_on_the_compact_cnn_are_refused(
    tmp_path: Path, tree_maker: Callable[..., Path]
) -> None:
    argv, env = _arguments(tmp_path, tree_maker)
    argv[argv.index("mobilenetv2")] = "cnn"
    with pytest.raises(ValueError, match="--weights imagenet needs a pretrained backbone"):
        contract.parse([*argv, "--weights", "imagenet"], env)
