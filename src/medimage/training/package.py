"""Export, verify and evaluate: the model directory SageMaker packs into ``model.tar.gz``.

Two TFLite variants are exported, float and int8; the int8 one is served (``model.json``
``model_file``) only when it is at parity with the float one on the validation split, clean and under
the acquisition shifts (`INT8_PARITY`). The test split is then scored by the served variant through the
serving classifier, so ``evaluation.json`` describes the model that will be served. ``model.keras`` (the
trained network without its optimizer) rides along for full-TensorFlow comparisons.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from medimage.core.input_profile import InputProfile
from medimage.core.preprocess import PreprocessSpec
from medimage.core.selective import Threshold
from medimage.training.contract import Log, TrainConfig
from medimage.training.data import LabeledChannels

MODEL_FILE = "model.tflite"
INT8_MODEL_FILE = "model-int8.tflite"
KERAS_MODEL_FILE = "model.keras"
OUTPUTS = {MODEL_FILE: "probabilities", INT8_MODEL_FILE: "logits"}
AGREEMENT_TRAIN_IMAGES = 64  # training images checked beside the validation split
INT8_NOVELTY_IMAGES = 1000  # training images the int8 model's own novelty Gaussian is fitted on
# The int8 variant is served when it loses at most this much against float on validation.
INT8_PARITY = {"accuracy": 0.005, "macro_auc": 0.005, "shifted_mean_accuracy": 0.005}


@dataclass(frozen=True)
class TrainedModel:
    """A fitted Keras model and what ``model.json`` records about how it was made."""

    model: Any
    config: TrainConfig
    preset: str
    dataset: str
    spec: PreprocessSpec
    training_seconds: float
    calibration: dict[str, Any] | None = None


def export_and_evaluate(
    trained: TrainedModel, data: LabeledChannels, model_dir: Path, log: Log
) -> dict[str, Any]:
    """Write the model directory, check each export against Keras, and score val and test as served;
    returns ``evaluation.json``'s content."""
    import tensorflow as tf

    from medimage.core.novelty import fit_policy
    from medimage.core.selective import fit_review, withhold
    from medimage.evaluation.scoring import score, scored
    from medimage.evaluation.shifts import shifted_scored
    from medimage.inference.model import TFLiteClassifier, resolve_interpreter
    from medimage.training import export, mixed_precision, novelty

    # The SageMaker TensorFlow container may lack LiteRT (training/requirements.txt asks for it).
    interpreter = resolve_interpreter(allow_tensorflow=True)

    model, config, spec, labels, channels = (
        trained.model,
        trained.config,
        trained.spec,
        data.labels,
        data.channels,
    )
    model_dir.mkdir(parents=True, exist_ok=True)
    gaussians = novelty.fit_gaussians(model, channels["train"].x, log) if config.novelty else None
    float_bytes = export.to_tflite_float(model, novelty=gaussians)
    mixed = mixed_precision.quantize_mixed(
        model, channels["train"].x, config.int8_calibration_images, config.seed, interpreter, gaussians
    )
    log(f"int8 layers kept float: {mixed.to_dict()}")
    int8_bytes = mixed.content
    if gaussians is not None:
        # A second int8 conversion with the novelty Gaussian fitted on the first one's own activations
        # (`novelty.int8_gaussians`); the score's head is float, so nothing else is quantised differently.
        rng = np.random.default_rng(config.seed)
        train_x = channels["train"].x
        sample = train_x[np.sort(rng.permutation(len(train_x))[:INT8_NOVELTY_IMAGES])]
        int8_bytes = export.to_tflite_int8(
            model,
            train_x,
            config.int8_calibration_images,
            config.seed,
            novelty=novelty.int8_gaussians(int8_bytes, sample, interpreter),
            float_layers=mixed.float_layers,
        )
    (model_dir / MODEL_FILE).write_bytes(float_bytes)
    (model_dir / INT8_MODEL_FILE).write_bytes(int8_bytes)
    (model_dir / "labels.txt").write_text("\n".join(labels) + "\n", encoding="utf-8")

    # Keras on the trainer's arrays vs. each export on the files' bytes through the serving classifier:
    # one check catches a converter fault and any training/serving preprocessing difference at once.
    check_paths = channels["validation"].paths + channels["train"].paths[:AGREEMENT_TRAIN_IMAGES]
    check_x = np.concatenate([channels["validation"].x, channels["train"].x[:AGREEMENT_TRAIN_IMAGES]]).astype(
        np.float32
    )
    reference_outputs = export.explained_model(model, novelty=gaussians).predict(
        check_x, batch_size=64, verbose=0
    )
    reference, reference_cams = reference_outputs[0], reference_outputs[1]
    checks: dict[str, Any] = {}
    classifiers = {}
    cams = {}
    scores = {}
    for name, file, content in (("float", MODEL_FILE, float_bytes), ("int8", INT8_MODEL_FILE, int8_bytes)):
        classifiers[name] = TFLiteClassifier(
            content, labels, spec, {}, OUTPUTS[file], interpreter=interpreter
        )
        candidate, cams[name], scores[name] = served_outputs(classifiers[name], check_paths)
        if name == "float":
            checks[name] = export.check_agreement(reference, candidate)
        else:
            checks[name] = export.compare(reference, candidate)
        checks[name]["bytes"] = len(content)
    checks["cam_float"] = export.check_cam_agreement(reference_cams, cams["float"])
    checks["cam_int8_vs_float"] = export.compare_cams(cams["float"], cams["int8"], export.CAM_INT8_TOLERANCE)
    if gaussians is not None:
        checks["novelty_float"] = novelty.check_score_agreement(reference_outputs[2], scores["float"])
        checks["novelty_int8_vs_float"] = novelty.compare_scores(scores["float"], scores["int8"])
    log(f"export: {checks}")

    # The novelty thresholds and the review threshold of each variant, fitted on validation clean and
    # under the acquisition shifts (pooled), the confidence threshold on the images the novelty score lets
    # through; the parity check compares the variants on the same probabilities.
    val_files = [path.read_bytes() for path in channels["validation"].paths]
    y_val = np.asarray(data.y["validation"])
    val_scored = {name: scored(classifier, val_files) for name, classifier in classifiers.items()}
    shifted_results = {
        name: shifted_scored(classifier, val_files) for name, classifier in classifiers.items()
    }
    val_probs = {name: result.probabilities for name, result in val_scored.items()}
    shifted = {
        name: {shift: result.probabilities for shift, result in by_shift.items()}
        for name, by_shift in shifted_results.items()
    }
    policies = {
        name: fit_policy(
            val_scored[name].novelty,
            {shift: result.novelty for shift, result in shifted_results[name].items()},
        )
        if gaussians is not None
        else None
        for name, classifier in classifiers.items()
    }
    reviews = {}
    for name in classifiers:
        policy = policies[name]
        if policy is None:
            reviews[name] = fit_review(val_probs[name], y_val, shifted[name], config.review_target, labels)
            continue
        reviews[name] = fit_review(
            withhold(val_probs[name], policy.flagged(val_scored[name].novelty)),
            y_val,
            {
                shift: withhold(result.probabilities, policy.flagged(result.novelty))
                for shift, result in shifted_results[name].items()
            },
            config.review_target,
            labels,
        )
    quantization = int8_parity(
        {name: (val_probs[name], shifted[name]) for name in classifiers},
        y_val,
        labels,
        {n: [r["class_thresholds"][label] for label in labels] for n, r in reviews.items()},
    )
    quantization["mixed_precision"] = mixed.to_dict()
    log(f"int8 parity on validation: {quantization}")
    served_name = quantization["served"]
    review = {**reviews[served_name], "confidence": "top-1 probability"}
    served_policy = policies[served_name]
    novelty_entry = (
        None
        if served_policy is None or gaussians is None
        else novelty.model_json_entry(
            served_policy,
            gaussians,
            novelty.novelty_layer_name(model),
            val_scored[served_name].novelty,
            {shift: result.novelty for shift, result in shifted_results[served_name].items()},
            novelty.far_scores(classifiers[served_name], channels["validation"].x, config.seed),
            novelty.inverted_flagged(classifiers[served_name], channels["validation"].x, served_policy),
        )
    )
    if novelty_entry is not None:
        log(f"novelty: { {k: v for k, v in novelty_entry.items() if k != 'by_shift'} }")
    profile = InputProfile.fit(channels["train"].x)
    review["outside_training_distribution"] = distribution_rates(profile, val_files, spec)
    log(f"review policy: {review}")
    save_keras(model, model_dir / KERAS_MODEL_FILE)
    h, w, n_classes = (int(v) for v in reference_cams.shape[1:])

    meta = {
        "format_version": 1,
        "labels": labels,
        "preprocess": spec.to_dict(),
        "model_file": INT8_MODEL_FILE if quantization["served"] == "int8" else MODEL_FILE,
        "float_model_file": MODEL_FILE,
        "int8_model_file": INT8_MODEL_FILE,
        "keras_model_file": KERAS_MODEL_FILE,
        "outputs": OUTPUTS,
        "preset": trained.preset,
        "dataset": trained.dataset,
        "manifest_version": config.manifest_version,
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "training_seconds": round(trained.training_seconds, 1),
        "parameters": int(model.count_params()),
        "tensorflow_version": tf.__version__,
        "architecture": model.name,
        "hyperparameters": asdict(config),
        "export_checks": checks,
        "quantization": quantization,
        "calibration": trained.calibration,
        "review": review,
        "input_profile": profile.to_dict(),
        "novelty": novelty_entry,
        "explain": {
            "output": export.CAM_OUTPUT,
            "shape": [h, w, n_classes],
            "values": "logits",
            "method": "class activation maps: the final Dense layer on each cell of the pooled feature map",
        },
    }
    # The Android app's model (RGB input, TFLite metadata), where the tflite-support environment exists.
    from medimage.android.package import model_dir_entry

    meta["android"] = model_dir_entry(model, meta, model_dir, log)
    (model_dir / "model.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")

    # Score val and test exactly as the inference Lambda would: file bytes -> serving classifier.
    served = TFLiteClassifier.from_dir(model_dir, interpreter=interpreter)
    threshold = served.review_policy
    evaluation = {"val": score(served, val_files, y_val, threshold=threshold)}
    contents = (path.read_bytes() for path in channels["test"].paths)
    evaluation["test"] = score(served, contents, data.y["test"], threshold=threshold, per_image=True)
    text = json.dumps(evaluation, indent=2) + "\n"
    (model_dir / "evaluation.json").write_text(text, encoding="utf-8")
    return evaluation


def distribution_rates(profile: InputProfile, files: list[bytes], spec: Any) -> dict[str, Any]:
    """The share of validation images the input profile flags, clean and under each acquisition shift: an
    ordinary image should almost never be flagged; one that looks like another site's may be."""
    from medimage.core.preprocess import load_image_array
    from medimage.evaluation.shifts import SHIFTS, shifted_bytes

    def rate(contents: list[bytes]) -> float:
        return profile.rate(np.stack([load_image_array(data, spec) for data in contents]))

    by_shift = {shift.name: rate([shifted_bytes(data, shift) for data in files]) for shift in SHIFTS}
    return {
        "validation": rate(files),
        "shifted_mean": round(float(np.mean(list(by_shift.values()))), 6) if by_shift else None,
        "by_shift": by_shift,
    }


def served_outputs(classifier: Any, paths: list[Path]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Probabilities (n x C), raw class-activation maps (n x h x w x C) and novelty scores (n; NaN for a
    model without them) of these files as served."""
    from medimage.core.preprocess import load_image_array

    rows = [
        classifier.run_scored(load_image_array(path.read_bytes(), classifier.spec), explain=True)
        for path in paths
    ]
    return (
        np.stack([probs for probs, _, _ in rows]),
        np.stack([cam for _, cam, _ in rows]),
        np.array([np.nan if score is None else score for _, _, score in rows], dtype=np.float64),
    )


def int8_parity(
    outputs: dict[str, tuple[np.ndarray, dict[str, np.ndarray]]],
    truth: Any,
    labels: list[str],
    thresholds: dict[str, Threshold] | None = None,
) -> dict[str, Any]:
    """Float and int8 side by side on the validation images, clean and under the acquisition shifts (each
    at its own review threshold, when given), from each variant's probabilities (clean, and by shift);
    ``served`` is int8 when no figure of `INT8_PARITY` drops by more than its tolerance."""
    from medimage.evaluation.shifts import robustness_of

    figures = {}
    n = 0
    for name, (clean, shifted) in outputs.items():
        threshold = (thresholds or {}).get(name)
        report = robustness_of(clean, shifted, list(truth), labels, threshold=threshold)
        n = report["n"]
        figures[name] = {
            "accuracy": report["clean"]["accuracy"],
            "macro_auc": report["clean"]["macro_auc"],
            "shifted_mean_accuracy": round(report["shifted_mean_accuracy"], 6),
            "shifted_mean_ece": report["shifted_mean_ece"],
            "shifted_mean_coverage": report.get("shifted_mean_coverage"),
            "shifted_mean_accuracy_above": report.get("shifted_mean_accuracy_above"),
            "lowest_coverage_shift": report.get("lowest_coverage_shift"),
        }
    losses = {
        key: round((figures["float"][key] or 0.0) - (figures["int8"][key] or 0.0), 6) for key in INT8_PARITY
    }
    at_parity = all(losses[key] <= tolerance for key, tolerance in INT8_PARITY.items())
    return {
        "served": "int8" if at_parity else "float",
        "at_parity": at_parity,
        "tolerance": INT8_PARITY,
        "loss": losses,
        "n": n,
        **figures,
    }


def save_keras(model: Any, path: Path) -> None:
    """The trained network alone (no optimizer state): a copy with the same weights, never compiled."""
    import keras

    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    copy.save(path)
