"""Bad training input: one clear line on stderr and a non-zero exit, never a bare traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from medimage.cli.main import main as cli
from medimage.core.presets import get_preset
from medimage.training.runner import default_train_script, scan_tree, write_channels


@pytest.fixture
def channels(tmp_path: Path, tree_maker: Callable[..., Path]) -> dict[str, Path]:
    """Valid channels of a tiny tree; each test breaks them in one way."""
    tree = tree_maker(tmp_path / "tree", per_class=12, size=16)
    return write_channels(scan_tree(tree, get_preset("folders")), tmp_path / "channels")


def run_train(channels: dict[str, Path], tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.update({f"SM_CHANNEL_{name.upper()}": str(path) for name, path in channels.items()})
    env.update({"SM_MODEL_DIR": str(tmp_path / "model"), "SM_OUTPUT_DATA_DIR": str(tmp_path / "output")})
    return subprocess.run(
        [sys.executable, str(default_train_script()), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def assert_clean_failure(result: subprocess.CompletedProcess[str], expected: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("train.py: error:") and expected in last, result.stderr


def test_empty_channel(channels: dict[str, Path], tmp_path: Path) -> None:
    (channels["validation"] / "val.csv").write_text("key,label,sha256,patient_id\n")
    result = run_train(channels, tmp_path, "--preset", "folders")
    assert_clean_failure(result, "channel 'validation' is empty")


def test_channel_without_manifest_csv(channels: dict[str, Path], tmp_path: Path) -> None:
    (channels["test"] / "test.csv").unlink()
    assert_clean_failure(run_train(channels, tmp_path, "--preset", "folders"), "has no manifest CSV")


def test_class_with_no_training_images(channels: dict[str, Path], tmp_path: Path) -> None:
    csv_path = channels["train"] / "train.csv"
    lines = csv_path.read_text().splitlines()
    csv_path.write_text("\n".join(line for line in lines if ",disk," not in line) + "\n")
    assert_clean_failure(run_train(channels, tmp_path, "--preset", "folders"), "disk have no training images")


def test_unreadable_image(channels: dict[str, Path], tmp_path: Path) -> None:
    key = (channels["train"] / "train.csv").read_text().splitlines()[1].split(",")[0]
    target = channels["train"] / key
    target.unlink()
    target.write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    assert_clean_failure(run_train(channels, tmp_path, "--preset", "folders"), f"image {key}")


def test_unknown_preset(channels: dict[str, Path], tmp_path: Path) -> None:
    assert_clean_failure(run_train(channels, tmp_path, "--preset", "nope"), "unknown preset 'nope'")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--mixup", "-0.2"), "--mixup must be at least 0"),
        (("--aspect-jitter", "0.7"), "--aspect-jitter in [0, 0.5)"),
        (("--standardize", "maybe"), "expected true or false, got 'maybe'"),
        (("--ema", "1.0"), "--ema must lie in [0, 1)"),
        (("--bn-recompute", "sometimes"), "expected true or false, got 'sometimes'"),
    ],
)
def test_out_of_range_robustness_hyperparameters(
    channels: dict[str, Path], tmp_path: Path, args: tuple[str, ...], expected: str
) -> None:
    result = run_train(channels, tmp_path, "--preset", "folders", *args)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert expected in result.stderr


def test_failure_reason_reaches_sagemakers_failure_file(channels: dict[str, Path], tmp_path: Path) -> None:
    env_dir = tmp_path / "sm-output"
    env = dict(
        os.environ,
        SM_OUTPUT_DIR=str(env_dir),
        SM_MODEL_DIR=str(tmp_path / "m"),
        SM_OUTPUT_DATA_DIR=str(tmp_path / "o"),
        **{f"SM_CHANNEL_{n.upper()}": str(p) for n, p in channels.items()},
    )
    subprocess.run(
        [sys.executable, str(default_train_script()), "--preset", "nope"],
        env=env,
        capture_output=True,
        timeout=120,
    )
    assert "unknown preset 'nope'" in (env_dir / "failure").read_text()


def test_cli_train_unknown_preset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli(["train", "--data", str(tmp_path), "--preset", "nope", "--out", str(tmp_path / "o")])
    assert code != 0
    assert "unknown preset 'nope'" in capsys.readouterr().err


def test_cli_train_reports_an_empty_split_early(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], tree_maker: Callable[..., Path]
) -> None:
    tree = tree_maker(tmp_path / "tree", per_class=1, size=16, labels=("a", "b"))
    code = cli(["train", "--data", str(tree), "--preset", "folders", "--out", str(tmp_path / "o")])
    assert code != 0
    assert "split empty" in capsys.readouterr().err
