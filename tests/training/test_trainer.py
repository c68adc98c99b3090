"""One tiny real training run (via `medimage train` -> training/train.py) serves several assertions."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from medimage.cli.main import main as cli
from medimage.training import parse_metrics

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]

MODEL_FILES = ("model.tflite", "model-int8.tflite", "labels.txt", "model.json", "evaluation.json")
OUTPUT_FILES = ("evaluation.json", "confusion_matrix.png", "training_curves.png", "coverage_accuracy.png")
METRIC_FIELDS = {
    "n",
    "accuracy",
    "per_class",
    "macro_auc",
    "log_loss",
    "ece",
    "confusion_matrix",
    "labels",
    "selective",
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, tree_maker: Callable[..., Path]) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("trained")
    tree = tree_maker(root / "tree", per_class=30, size=24)
    out = root / "model"
    code = cli(
        [
            "train",
            "--data",
            str(tree),
            "--preset",
            "folders",
            "--out",
            str(out),
            "--epochs",
            "2",
            "--image-size",
            "32",
            "-H",
            "batch-size=8",
        ]
    )
    assert code == 0, (out / "output" / "train.log").read_text()
    return {"tree": tree, "out": out}


def test_train_writes_every_output_file(trained: dict[str, Path]) -> None:
    out = trained["out"]
    for name in MODEL_FILES:
        assert (out / name).stat().st_size > 0, name
    for name in OUTPUT_FILES:
        assert (out / "output" / name).stat().st_size > 0, name
    assert (out / "output" / "confusion_matrix.png").read_bytes().startswith(b"\x89PNG")


def test_model_json_and_evaluation_follow_the_contract(trained: dict[str, Path]) -> None:
    out = trained["out"]
    meta = json.loads((out / "model.json").read_text())
    assert meta["format_version"] == 1
    assert meta["labels"] == ["bars", "dim", "disk"] == (out / "labels.txt").read_text().split()
    assert meta["preprocess"] == {
        "image_size": 32,
        "channels": 1,
        "resize": "bilinear",
        "input_range": [0.0, 255.0],
    }
    assert (meta["float_model_file"], meta["int8_model_file"]) == ("model.tflite", "model-int8.tflite")
    assert meta["outputs"] == {"model.tflite": "probabilities", "model-int8.tflite": "logits"}
    # The served file is int8 exactly when the trainer's own parity check passed.
    quantization = meta["quantization"]
    assert quantization["at_parity"] == all(
        quantization["loss"][key] <= tolerance for key, tolerance in quantization["tolerance"].items()
    )
    served = {"int8": "model-int8.tflite", "float": "model.tflite"}[quantization["served"]]
    assert meta["model_file"] == served and (quantization["served"] == "int8") == quantization["at_parity"]
    assert meta["keras_model_file"] == "model.keras" and (out / "model.keras").stat().st_size > 0
    assert (meta["preset"], meta["dataset"], meta["manifest_version"]) == ("folders", "folders", "local")
    for key in ("trained_at", "training_seconds", "parameters", "tensorflow_version"):
        assert meta[key], key
    # The novelty score says whether it also looks for inverted images, and how many it catches.
    assert isinstance(meta["novelty"]["inverted_direction"], bool)
    assert 0.0 <= meta["novelty"]["inverted_validation_flagged"] <= 1.0
    evaluation = json.loads((out / "evaluation.json").read_text())
    assert set(evaluation) == {"val", "test"}
    for split in ("val", "test"):
        # The test split also lists each image's label and prediction, for the gate's paired comparison.
        per_image = {"truth", "predicted"} if split == "test" else set()
        assert set(evaluation[split]) == METRIC_FIELDS | per_image
        assert evaluation[split]["labels"] == meta["labels"]
    test = evaluation["test"]
    assert len(test["truth"]) == len(test["predicted"]) == test["n"]
    right = sum(t == p for t, p in zip(test["truth"], test["predicted"], strict=True))
    assert right / test["n"] == pytest.approx(test["accuracy"], abs=1e-6)
    assert evaluation == json.loads((out / "output" / "evaluation.json").read_text())


def test_tflite_models_agree_with_keras(trained: dict[str, Path]) -> None:
    # The trainer compares Keras on its arrays with each export served from the files' bytes.
    checks = json.loads((trained["out"] / "model.json").read_text())["export_checks"]
    assert checks["float"]["max_abs_diff"] <= 1e-3
    assert checks["float"]["top1_agreement"] == 1.0
    assert checks["int8"]["max_abs_diff"] <= 0.1
    assert checks["int8"]["top1_agreement"] >= 0.9
    assert checks["int8"]["bytes"] < checks["float"]["bytes"]


def test_the_int8_variant_ends_in_logits_so_its_probabilities_keep_their_resolution(trained):
    from medimage.inference.model import TFLiteClassifier

    classifier = TFLiteClassifier.from_dir(trained["out"], "model-int8.tflite")
    assert classifier.outputs == "logits"
    rows = [
        classifier.predict_bytes(p.read_bytes()).probabilities for p in sorted(trained["tree"].rglob("*.png"))
    ]
    values = np.array([[row[label] for label in classifier.labels] for row in rows])
    np.testing.assert_allclose(values.sum(axis=1), 1.0, atol=1e-5)
    on_the_int8_grid = np.isclose(values * 256, np.round(values * 256), atol=1e-3)
    assert not on_the_int8_grid.all()


def test_tiny_synthetic_classes_are_learned(trained: dict[str, Path]) -> None:
    # Two epochs of a few steps fit the training images; held-out scores on 8 images after so few
    # batch-norm updates are too noisy to assert on, so the training accuracy is what is checked.
    metrics = parse_metrics((trained["out"] / "output" / "train.log").read_text().splitlines())
    assert metrics["train:accuracy"] >= 0.8


PER_IMAGE = ("truth", "predicted")


def test_evaluate_reproduces_the_trainers_test_and_val_metrics(
    trained: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    evaluation = json.loads((trained["out"] / "evaluation.json").read_text())
    served = json.loads((trained["out"] / "model.json").read_text())[
        "model_file"
    ]  # what evaluation.json scored
    for split, key in (("test", "test"), ("val", "val")):
        target = tmp_path / f"{split}.json"
        code = cli(
            [
                "evaluate",
                "--model",
                str(trained["out"] / served),
                "--data",
                str(trained["tree"]),
                "--preset",
                "folders",
                "--split",
                split,
                "--out",
                str(target),
            ]
        )
        assert code == 0
        printed = json.loads(capsys.readouterr().out)
        # evaluation.json's test split also lists each image's label and prediction (the gate pairs them
        # with the champion's); they add up to the same confusion matrix.
        expected = {k: v for k, v in evaluation[key].items() if k not in PER_IMAGE}
        assert printed == json.loads(target.read_text()) == expected
        if key == "test":
            recount = np.zeros_like(np.asarray(expected["confusion_matrix"]))
            for truth, predicted in zip(evaluation[key]["truth"], evaluation[key]["predicted"], strict=True):
                recount[truth, predicted] += 1
            assert recount.tolist() == expected["confusion_matrix"]


def evaluate_served(trained: dict[str, Path]) -> list[str]:
    """``medimage evaluate`` of the trained model's float file on its own tree (options follow)."""
    model = str(trained["out"] / "model.tflite")
    return ["evaluate", "--model", model, "--data", str(trained["tree"]), "--preset", "folders"]


def test_metric_lines_are_readable_by_the_metric_definitions(trained: dict[str, Path]) -> None:
    log = (trained["out"] / "output" / "train.log").read_text().splitlines()
    metrics = parse_metrics(log)
    evaluation = json.loads((trained["out"] / "evaluation.json").read_text())
    assert metrics["validation:accuracy"] == pytest.approx(evaluation["val"]["accuracy"], abs=1e-5)
    assert metrics["test:accuracy"] == pytest.approx(evaluation["test"]["accuracy"], abs=1e-5)
    assert {"train:loss", "train:accuracy", "validation:loss"} <= set(metrics)
    assert sum(line.startswith("epoch ") for line in log) == 2


def test_evaluate_shifts_reports_clean_and_shifted_accuracy_as_served(
    trained: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN the trained model and its validation images
    evaluation = json.loads((trained["out"] / "evaluation.json").read_text())
    # WHEN its robustness to two acquisition shifts is measured
    code = cli(
        [
            *evaluate_served(trained),
            "--split",
            "val",
            "--shifts",
            "gamma_1.5,pad_12",
        ]
    )
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    # THEN the clean figures are the trainer's validation figures, and each shift has its own
    assert report["clean"]["accuracy"] == evaluation["val"]["accuracy"]
    assert report["n"] == evaluation["val"]["n"]
    assert set(report["shifts"]) == {"gamma_1.5", "pad_12"}
    assert report["worst_shift"]["accuracy"] == min(s["accuracy"] for s in report["shifts"].values())


def test_evaluate_report_routes_clean_shifted_made_and_foreign_sets_side_by_side(
    trained: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from PIL import Image

    # GIVEN the trained model (its novelty score and thresholds in model.json) and a folder of pictures
    # that are not of its kind: colour noise
    meta = json.loads((trained["out"] / "model.json").read_text())
    assert meta["novelty"]["unusual_threshold"] <= meta["novelty"]["foreign_threshold"]
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(photos / f"p{i}.png")
    (photos / "notes.txt").write_text("not an image")

    # WHEN the side-by-side report runs on the validation images
    code = cli(
        [
            *evaluate_served(trained),
            "--split",
            "val",
            "--report",
            "--shifts",
            "gamma_1.5,pad_12",
            "--ood",
            f"photos={photos}",
            "--pages",
            "4",
        ]
    )
    assert code == 0
    report = json.loads(capsys.readouterr().out)

    # THEN every set has its routing: what was labeled, how right, the errors sent to review, and why
    evaluation = json.loads((trained["out"] / "evaluation.json").read_text())
    assert report["review_thresholds"] == meta["review"]["class_thresholds"]
    assert report["clean"]["n"] == evaluation["val"]["n"]
    assert report["clean"]["accuracy"] == pytest.approx(evaluation["val"]["accuracy"], abs=1e-6)
    assert set(report["shifted"]) == {"gamma_1.5", "pad_12"}
    assert set(report["made_from_images"]) == {"inverted", "corner_crop", "bad_window"}
    assert set(report["foreign"]) == {"photos", "rendered_pages"}
    assert report["foreign"]["photos"]["n"] == 4 and report["foreign"]["rendered_pages"]["n"] == 4
    for routed in [report["clean"], *report["foreign"].values()]:
        labeled = routed["reasons"].get("labeled", 0)
        assert labeled == round(routed["labeled_automatically"] * routed["n"])
        assert sum(routed["reasons"].values()) == routed["n"]


def test_evaluate_rejects_an_unknown_shift(
    trained: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli(
        [
            *evaluate_served(trained),
            "--shifts",
            "gamma_1.5,fog",
        ]
    )
    assert code != 0
    assert "unknown shift(s) ['fog']" in capsys.readouterr().err


def test_bench_inference_compares_litert_with_tensorflow_on_the_same_handler(
    trained: dict[str, Path],
) -> None:
    # GIVEN the trained model, with the Keras network beside it (what a full-TensorFlow handler serves)
    # WHEN the inference benchmark runs both runtimes through the handler
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "inference_bench.py"),
            "--model",
            str(trained["out"] / "model.tflite"),
            "--images",
            str(trained["tree"] / "disk"),
            "--repeat",
            "1",
            "--batch",
            "4",
            "--cold-runs",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    # THEN both report the same labels and each its cold start, latency and size
    assert {"litert", "tensorflow", "floor", "ratios", "targets", "machine", "model"} <= set(report)
    assert report["tensorflow"]["runtime"] == "tensorflow keras model.keras in a tf.function"
    assert report["litert"]["label_agreement_with_tensorflow"] == 1.0
    # AND the LiteRT side is put next to the bare floor (decode + one int8 invoke) measured in the same run
    floor = report["floor"]
    assert floor["model_file"] == "model-int8.tflite" and floor["samples"] == report["litert"]["warm_samples"]
    assert floor["p50_ms_fullres"] >= floor["decode_p50_ms"] > 0 and floor["invoke_p50_ms"] > 0
    assert report["ratios"]["handler_vs_floor_p50"] == report["litert"]["handler_vs_floor_p50"] > 0
    # AND what API Gateway's base64 body costs any handler is timed beside the floor
    assert floor["api_base64_p50_ms"] > 0 and report["ratios"]["handler_vs_floor_plus_base64_p50"] > 0
    assert floor["api_base64_stdlib_p50_ms"] > 0
    # AND the handler ran from bytecode, as the image's Dockerfile compiles it
    assert report["machine"]["bytecode_compiled"] is True
    # AND the cold start has its floor too: fresh processes that import only numpy, Pillow and LiteRT
    assert len(floor["cold_start_runs_s"]) == 2 and floor["cold_start_s"] > 0
    # AND the cold-start ratios pair the runs that took turns
    litert_runs, tf_runs = report["litert"]["cold_start_runs_s"], report["tensorflow"]["cold_start_runs_s"]
    cold_ratio = statistics.median(
        a / b for a, b in zip(litert_runs, floor["cold_start_runs_s"], strict=True)
    )
    assert report["ratios"]["cold_start_vs_floor"] == pytest.approx(cold_ratio, abs=0.002)
    speedup = statistics.median(t / a for t, a in zip(tf_runs, litert_runs, strict=True))
    assert report["ratios"]["cold_start_speedup_vs_tensorflow"] == pytest.approx(speedup, abs=0.06)
    bound = statistics.median(t / f for t, f in zip(tf_runs, floor["cold_start_runs_s"], strict=True))
    assert report["ratios"]["floor_cold_start_speedup_vs_tensorflow"] == pytest.approx(bound, abs=0.06)
    # AND each target names its bound, the figure of this run and whether it is met
    for name, target in report["targets"].items():
        assert isinstance(target["met"], bool) and target["measured"] > 0, name
    for name in ("litert", "tensorflow"):
        result = report[name]
        # AND the cold start is the median of fresh processes, each holding the interpreter's start-up
        assert len(result["cold_start_runs_s"]) == 2 and 0 < result["cold_start_s"] < 120
        assert result["cold_start_s"] == pytest.approx(sum(result["cold_start_runs_s"]) / 2, abs=0.002)
        assert result["process_start_s"] > 0 and result["cold_import_s"] > 0
        assert result["cold_start_cpu_s"] > 0
        assert result["warm_p50_ms_fullres"] > 0 and result["peak_rss_mb"] > 0 and result["ship_mb"] > 0


def test_the_review_threshold_is_the_one_validation_chooses_for_the_target(trained: dict[str, Path]) -> None:
    from medimage.core.presets import get_preset
    from medimage.core.selective import choose_threshold, class_thresholds, select
    from medimage.evaluation.scoring import probabilities
    from medimage.evaluation.shifts import SHIFTS, shifted_probabilities
    from medimage.inference.model import TFLiteClassifier
    from medimage.training.runner import scan_tree

    # GIVEN the trained model and the validation images the trainer fitted its review threshold on, clean
    # and under every acquisition shift
    out = trained["out"]
    meta = json.loads((out / "model.json").read_text())
    served = TFLiteClassifier.from_dir(out)
    val = scan_tree(trained["tree"], get_preset("folders"), None).split("val")
    truth = np.array([served.labels.index(image.label) for image in val])
    files = [image.path.read_bytes() for image in val]
    probs = probabilities(served, files)
    shifted = shifted_probabilities(served, files)
    # WHEN the threshold is chosen again, by hand, for the trainer's target on all of them pooled
    pooled = np.concatenate([probs, *shifted.values()])
    pooled_truth = np.concatenate([truth] * (1 + len(SHIFTS)))
    target = meta["review"]["target_accuracy"]
    again = choose_threshold(pooled, pooled_truth, target)
    by_class = class_thresholds(pooled, pooled_truth, target, again["threshold"])
    # THEN it is the one written to model.json and used by the served classifier and evaluation.json,
    # with one threshold per label, none below it
    assert meta["review"]["threshold"] == again["threshold"] == served.review_threshold
    assert meta["review"]["class_thresholds"] == dict(zip(served.labels, by_class, strict=True))
    assert served.class_thresholds == by_class == served.review_policy
    assert min(by_class) >= again["threshold"]
    assert meta["review"]["pooled"]["coverage"] == select(pooled, pooled_truth, by_class).coverage
    assert meta["review"]["fitted_on"].startswith("validation, clean and under 14 acquisition shifts")
    assert meta["review"]["target_accuracy"] == 0.98
    evaluation = json.loads((out / "evaluation.json").read_text())
    assert evaluation["val"]["selective"]["threshold"] == by_class
    assert evaluation["val"]["selective"]["coverage"] == meta["review"]["coverage"]
    assert evaluation["test"]["selective"]["threshold"] == by_class
    # AND the explain output is described for clients
    assert meta["explain"]["output"] == "class_activation_maps" and len(meta["explain"]["shape"]) == 3
    assert meta["export_checks"]["cam_int8_vs_float"]["n"] > 0


def test_evaluate_draws_the_confusion_matrix_and_coverage_curve_beside_its_json(
    trained: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "report" / "val.json"
    args = ["evaluate", "--model", str(trained["out"]), "--data", str(trained["tree"])]
    code = cli([*args, "--preset", "folders", "--split", "val", "--out", str(target)])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert 0.0 <= report["selective"]["coverage"] <= 1.0 and report["selective"]["curve"]
    for name in ("val-confusion_matrix.png", "val-coverage_accuracy.png"):
        assert (target.parent / name).read_bytes().startswith(b"\x89PNG"), name
    # A deployment's own threshold replaces the model's; one outside 0..1 is refused.
    code = cli([*args, "--preset", "folders", "--split", "val", "--review-threshold", "1.0"])
    assert code == 0
    assert json.loads(capsys.readouterr().out)["selective"]["threshold"] == 1.0
    assert cli([*args, "--preset", "folders", "--review-threshold", "1.5"]) != 0
