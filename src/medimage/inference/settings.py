"""The inference function's settings, read once from the environment the template gives it.

Field names follow the template parameters (InferenceDatasets, InferenceDefaultDataset,
ModelCheckIntervalSeconds, MaxImageBytes, ReviewThreshold, CandidateTrialShare); ``MEDIMAGE_MODEL`` is
`medimage serve --model`'s local model. ``PACS_STOW_URL`` and ``PACS_SECRET_ARN`` (PacsStowUrl,
PacsCredentialsSecretArn) name the PACS that drop-to-label sends each SR to, and the secret of its
credentials. ``REVIEW_THRESHOLD`` (empty: each model's own ``model.json`` ``review.threshold``) is the
confidence below which this deployment routes a prediction to a clinician.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass

from medimage.core.images import ImageLimits

# Lambda's synchronous payload limit is 6 MB for the whole event, with the body base64-encoded.
DEFAULT_MAX_REQUEST_BYTES = 4_000_000
# The share of images a candidate on trial also classifies (CandidateTrialShare's default): low enough that
# the median request never waits for it (benchmarks/trial_bench.py).
DEFAULT_CANDIDATE_SHARE = 0.1


@dataclass(frozen=True)
class InferenceSettings:
    """The inference function's configuration, read once from its environment (``from_env``)."""

    datasets: tuple[str, ...]
    default_dataset: str
    check_interval_s: float = 60.0
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    max_image_bytes: int = ImageLimits.max_bytes
    data_bucket: str = ""
    model_cache_dir: str | None = None
    # A local .tflite (with model.json beside it) served instead of the S3 registry.
    local_model: str | None = None
    # Overrides every served model's review threshold (None: the model's own).
    review_threshold: float | None = None
    # The DICOMweb service the SRs go back to (empty: none), and the secret of its credentials.
    pacs_stow_url: str = ""
    pacs_secret_arn: str = ""
    # Silent trial: the share of requests and dropped images the candidate also classifies; its pairs are
    # written once TRIAL_FLUSH_PAIRS are waiting or the oldest is TRIAL_FLUSH_SECONDS old.
    candidate_share: float = DEFAULT_CANDIDATE_SHARE
    trial_flush_pairs: int = 25
    trial_flush_s: float = 60.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> InferenceSettings:
        env = os.environ if env is None else env
        listed = [d.strip() for d in env.get("DATASETS", "").split(",") if d.strip()]
        if not listed:  # every preset-named dataset, plus the ones mapped to a preset by DATASET_PRESETS
            from medimage.core.presets import preset_names  # the template always names them

            extra = json.loads(env.get("DATASET_PRESETS") or "{}")
            listed = [n for n in preset_names() if n != "folders"] + sorted(extra)
        default = env.get("DEFAULT_DATASET") or listed[0]
        if default not in listed:
            listed.insert(0, default)
        return cls(
            datasets=tuple(dict.fromkeys(listed)),
            default_dataset=default,
            check_interval_s=float(env.get("MODEL_CHECK_INTERVAL_S") or "60"),
            max_request_bytes=int(env.get("MAX_REQUEST_BYTES") or DEFAULT_MAX_REQUEST_BYTES),
            max_image_bytes=int(env.get("MAX_IMAGE_BYTES") or ImageLimits.max_bytes),
            data_bucket=env.get("DATA_BUCKET", ""),
            model_cache_dir=env.get("MODEL_CACHE_DIR") or None,
            local_model=env.get("MEDIMAGE_MODEL") or None,
            review_threshold=parse_review_threshold(env.get("REVIEW_THRESHOLD")),
            pacs_stow_url=(env.get("PACS_STOW_URL") or "").strip(),
            pacs_secret_arn=(env.get("PACS_SECRET_ARN") or "").strip(),
            candidate_share=parse_share(env.get("CANDIDATE_SHARE")),
            trial_flush_pairs=int(env.get("TRIAL_FLUSH_PAIRS") or "25"),
            trial_flush_s=float(env.get("TRIAL_FLUSH_SECONDS") or "60"),
        )


def parse_share(text: str | None) -> float:
    """``CANDIDATE_SHARE`` in [0, 1]; empty is the default share."""
    if text is None or not text.strip():
        return DEFAULT_CANDIDATE_SHARE
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"CANDIDATE_SHARE {value} is not a share in [0, 1]")
    return value


def parse_review_threshold(text: str | None) -> float | None:
    """``REVIEW_THRESHOLD`` as a probability, None when empty; anything else is a configuration error."""
    if text is None or not text.strip():
        return None
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"REVIEW_THRESHOLD {text!r} is not a probability in [0, 1]") from None
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"REVIEW_THRESHOLD {value} is not a probability in [0, 1]")
    return value
