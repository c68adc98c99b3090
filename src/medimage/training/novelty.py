"""The novelty score in the trained network's own graph (``medimage.core.novelty`` says what it means).

The trainer fits one Gaussian to the pooled activations of one layer (`novelty_features`) over the
training images, and appends the score to the exported graph as plain layers: a pooling, a Dense layer
that whitens (``z = f L``), and ``||z - c||^2 / D`` for the centre ``c = mu L``. Serving reads it
beside the probabilities from the same invoke.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from medimage.core.errors import ExportError
from medimage.core.novelty import (
    NOVELTY_OUTPUT,
    ClassGaussians,
    NoveltyPolicy,
    fit_class_gaussians,
    fit_negative_direction,
    novelty_scores,
    rate_above,
)

# Relative difference allowed between the Keras score and the float export's (float rounding only).
FLOAT_RELATIVE_TOLERANCE = 1e-3


def _novelty_source(model: Any) -> tuple[str, Any]:
    """The layer the score reads and its output tensor: the one ``NOVELTY_LAYERS`` names for the
    architecture, else the feature map the classifier's head pools."""
    from medimage.training.model import NOVELTY_LAYERS, feature_map_layer

    name = NOVELTY_LAYERS.get(model.name)
    if name in {layer.name for layer in model.layers}:
        return name, model.get_layer(name).output
    pooling = feature_map_layer(model)
    return f"the input of {pooling.name}", pooling.input


def novelty_layer_name(model: Any) -> str:
    return _novelty_source(model)[0]


def novelty_features(model: Any) -> Any:
    """The pooled activations the score reads, as a tensor of the model's graph."""
    import keras

    return keras.layers.GlobalAveragePooling2D(name="novelty_pooled")(_novelty_source(model)[1])


def pooled_features_model(model: Any) -> Any:
    """The network up to the activations the novelty score reads."""
    import keras

    return keras.Model(model.inputs, novelty_features(model), name=f"{model.name}_novelty_features")


def pooled_features(model: Any, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Pooled features (n x D) of raw 0..255 images, in inference mode."""
    return np.asarray(
        pooled_features_model(model).predict(images.astype(np.float32), batch_size=batch_size, verbose=0),
        dtype=np.float64,
    )


def novelty_head(pooled: Any, gaussians: ClassGaussians) -> Any:
    """The score ``[batch]`` computed from the pooled-features tensor with constant, fitted weights.

    The differences to the class centres are taken one by one (never as ``|z|^2 - 2 z.c + |c|^2``, whose
    terms cancel in float32 when an image lies near a centre)."""
    import keras

    dimensions = gaussians.dimensions
    whiten = keras.layers.Dense(dimensions, use_bias=False, name="novelty_whiten", trainable=False)
    z = whiten(pooled)
    whiten.set_weights([gaussians.precision_cholesky.astype(np.float32)])
    centres = keras.ops.convert_to_tensor(gaussians.whitened_means.astype(np.float32))  # K x D
    offsets = keras.ops.expand_dims(z, 1) - keras.ops.expand_dims(centres, 0)  # batch x K x D
    squared = keras.ops.sum(keras.ops.square(offsets), axis=-1)  # batch x K
    score = keras.ops.min(squared, axis=-1) / float(dimensions)
    if gaussians.negative is not None:
        toward = keras.layers.Dense(1, name="novelty_negative", trainable=False)
        negative = keras.ops.reshape(toward(pooled), (-1,))
        toward.set_weights(
            [
                gaussians.negative.weights.astype(np.float32)[:, None],
                np.array([gaussians.negative.bias], dtype=np.float32),
            ]
        )
        score = keras.ops.maximum(score, negative)
    return keras.layers.Identity(name=NOVELTY_OUTPUT)(score)


def inverted(images: np.ndarray) -> np.ndarray:
    """Raw 0..255 images with their grey levels inverted: the known wrong input the score also looks for
    (a negative, or a DICOM MONOCHROME1 image read as MONOCHROME2)."""
    return 255.0 - np.asarray(images, dtype=np.float32)


# Training images whose inverted copies the inverted-image direction is fitted on.
NEGATIVE_IMAGES = 1500


def _negative_sample(images: np.ndarray, seed: int = 0) -> np.ndarray:
    order = np.random.default_rng(seed).permutation(len(images))[:NEGATIVE_IMAGES]
    return images[np.sort(order)]


def fit_gaussians(model: Any, x_train: np.ndarray, log: Any) -> ClassGaussians:
    """One Gaussian over the pooled activations of the (un-augmented) training images, whatever their
    class: the question is whether an image is like the training images, not which class it is near
    (class means are what the classifier already uses)."""
    features = pooled_features(model, x_train)
    negatives = pooled_features(model, inverted(_negative_sample(x_train)))
    gaussians = _with_negative(features, negatives)
    train_scores = novelty_scores(features, gaussians)
    negative_scores = novelty_scores(negatives, gaussians)
    negative = (
        "not told apart (no inverted-image direction)"
        if gaussians.negative is None
        else f"median {np.median(negative_scores):.3f}, 1st pct {np.quantile(negative_scores, 0.01):.3f}"
    )
    log(
        f"novelty: a Gaussian over {features.shape[1]} pooled activations of {len(features)} training "
        f"images; their scores: median {np.median(train_scores):.3f}, 99th percentile "
        f"{np.quantile(train_scores, 0.99):.3f}; inverted training images: {negative}"
    )
    return gaussians


def _with_negative(features: np.ndarray, negatives: np.ndarray) -> ClassGaussians:
    base = fit_class_gaussians(features, np.zeros(len(features), dtype=int), 1)
    direction = fit_negative_direction(features, negatives, base)
    return ClassGaussians(base.means, base.precision_cholesky, direction)


def check_score_agreement(reference: np.ndarray, candidate: np.ndarray) -> dict[str, float]:
    """Keras's novelty scores vs. the float export's: an ExportError beyond float rounding."""
    reference = np.asarray(reference, dtype=np.float64).reshape(-1)
    candidate = np.asarray(candidate, dtype=np.float64).reshape(-1)
    relative = float(np.max(np.abs(reference - candidate) / np.maximum(1.0, np.abs(reference))))
    if not relative <= FLOAT_RELATIVE_TOLERANCE:
        raise ExportError(
            f"the float model's novelty scores disagree with Keras: max relative difference {relative:.6f} "
            f"> {FLOAT_RELATIVE_TOLERANCE}"
        )
    return {"max_relative_diff": round(relative, 6), "n": len(reference)}


def compare_scores(reference: np.ndarray, candidate: np.ndarray) -> dict[str, float]:
    """Two exports' novelty scores: the largest and median relative difference and their rank correlation."""
    reference = np.asarray(reference, dtype=np.float64)
    candidate = np.asarray(candidate, dtype=np.float64)
    relative = np.abs(reference - candidate) / np.maximum(1e-6, np.abs(reference))
    ranks = [np.argsort(np.argsort(values)) for values in (reference, candidate)]
    correlation = float(np.corrcoef(*ranks)[0, 1]) if len(reference) > 1 else 1.0
    return {
        "max_relative_diff": round(float(relative.max()), 6),
        "median_relative_diff": round(float(np.median(relative)), 6),
        "rank_correlation": round(correlation, 6),
        "n": len(reference),
    }


def far_scores(classifier: Any, images: np.ndarray, seed: int) -> np.ndarray:
    """The served scores of images made to be unlike any training image (`far_images`)."""
    made = far_images(images.astype(np.float32), seed)
    return np.array([classifier.run_scored(image)[2] for image in made], dtype=np.float64)


def model_json_entry(
    policy: NoveltyPolicy,
    gaussians: ClassGaussians,
    layer: str,
    clean: np.ndarray,
    shifted: dict[str, np.ndarray],
    far: np.ndarray,
    inverted_rate: float | None = None,
) -> dict[str, Any]:
    """``model.json`` ``novelty``: the policy, how the score is made, and the share of each fitting set it
    sends to review."""
    by_shift = {name: rate_above(scores, policy.unusual_threshold) for name, scores in shifted.items()}
    return {
        **policy.to_dict(),
        "score": "squared Mahalanobis distance of a layer's pooled activations to the training images', "
        "over the number of activations"
        + (
            "; at least the scaled discriminant toward the training images inverted"
            if gaussians.negative is not None
            else ""
        ),
        "layer": layer,
        "features": gaussians.dimensions,
        "inverted_direction": gaussians.negative is not None,
        "fitted_on": "training images (mean and covariance); validation images clean and under the "
        "acquisition shifts (thresholds)",
        "validation_flagged": rate_above(clean, policy.unusual_threshold),
        "shifted_mean_flagged": round(float(np.mean(list(by_shift.values()))), 6) if by_shift else None,
        "made_far_flagged_as_foreign": rate_above(far, policy.foreign_threshold),
        "inverted_validation_flagged": inverted_rate,
        "by_shift": by_shift,
    }


def far_images(images: np.ndarray, seed: int, count: int = 24) -> np.ndarray:
    """Images unlike any training image, made from them: inverted, noise, flat grey, and stripes (float
    0..255, the shape of ``images``). They extend the int8 calibration to the scores of foreign input."""
    rng = np.random.default_rng(seed)
    shape = images.shape[1:]
    picks = images[rng.permutation(len(images))[: count // 4]]
    height, width = shape[0], shape[1]
    stripes = (np.indices((height, width)).sum(axis=0) // max(1, height // 8) % 2 * 255.0)[..., None]
    made = [
        255.0 - picks,
        rng.uniform(0, 255, size=(count // 4, *shape)),
        np.full((count // 8, *shape), 128.0),
        np.broadcast_to(stripes, (count // 8, height, width, 1)) * np.ones(shape[-1]),
    ]
    return np.concatenate([np.asarray(m, dtype=np.float32).reshape(-1, *shape) for m in made])


def int8_gaussians(int8_model: bytes, images: np.ndarray, interpreter: Any) -> ClassGaussians:
    """The novelty Gaussian refitted on an int8 model's own pooled activations over these (training)
    images: rounding adds noise in the directions where the training images barely vary, the ones a
    Mahalanobis distance weighs most, so a Gaussian fitted on float activations scores every int8 image
    as unusual. Measured on the chest model: the int8 activations' own fit separates photographs, OCT
    scans and documents from the X-rays at least as well as the float fit does (docs/experiments.md)."""
    runner = interpreter(model_content=int8_model, experimental_preserve_all_tensors=True)
    runner.allocate_tensors()
    entry = runner.get_input_details()[0]["index"]
    pooled = [d for d in runner.get_tensor_details() if "novelty_pooled" in d["name"]][-1]
    scale, zero = pooled["quantization"]

    def features_of(batch: np.ndarray) -> np.ndarray:
        features = []
        for image in batch.astype(np.float32):
            runner.set_tensor(entry, image[None])
            runner.invoke()
            values = runner.get_tensor(pooled["index"])[0].astype(np.float64)
            features.append((values - zero) * scale if scale else values)
        return np.array(features).reshape(len(features), -1)

    return _with_negative(features_of(images), features_of(inverted(images)))


def inverted_flagged(classifier: Any, images: np.ndarray, policy: NoveltyPolicy) -> float:
    """The share of these (validation) images, inverted, that the served score sends to review."""
    scores = [classifier.run_scored(image)[2] for image in inverted(images)]
    return rate_above(np.array(scores, dtype=np.float64), policy.unusual_threshold)
