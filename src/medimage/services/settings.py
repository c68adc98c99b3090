"""Each pipeline function's settings, read once from the environment the template gives it.

Field names follow the template parameters (``MaxImageBytes`` -> ``max_image_bytes``); the environment
variable of each is the one `template.yaml` sets. Handlers build their services from these, so no other
module reads the environment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from medimage.core.images import ImageLimits
from medimage.core.shards import DEFAULT_SHARD_BYTES, DEFAULT_SHARD_THRESHOLD
from medimage.services.datasets import DatasetResolver

Env = Mapping[str, str]


def _env(env: Env | None) -> Env:
    return os.environ if env is None else env


@dataclass(frozen=True)
class CommonSettings:
    """What every pipeline function is given by ``Globals`` (catalog table, dataset-to-preset map)."""

    catalog_table: str
    dataset_presets: str

    @classmethod
    def read(cls, env: Env) -> CommonSettings:
        return cls(catalog_table=env.get("CATALOG_TABLE", ""), dataset_presets=env.get("DATASET_PRESETS", ""))

    def resolver(self) -> DatasetResolver:
        return DatasetResolver.from_json(self.dataset_presets)


@dataclass(frozen=True)
class AnnotateSettings:
    common: CommonSettings
    max_image_bytes: int
    # Keys the pseudonyms of DICOM patient ids (PatientIdSalt; the stack's id when the parameter is empty).
    patient_id_salt: str = field(default="", repr=False)

    @classmethod
    def from_env(cls, env: Env | None = None) -> AnnotateSettings:
        env = _env(env)
        return cls(
            common=CommonSettings.read(env),
            max_image_bytes=int(env.get("MAX_IMAGE_BYTES") or ImageLimits.max_bytes),
            patient_id_salt=env.get("PATIENT_ID_SALT", ""),
        )

    @property
    def limits(self) -> ImageLimits:
        return ImageLimits(max_bytes=self.max_image_bytes)


@dataclass(frozen=True)
class SplitSettings:
    common: CommonSettings
    min_new_images: int
    state_machine_arn: str | None
    annotate_queue_url: str | None
    # How long a commit waits for the annotate queue to drain before it is retried.
    annotation_wait_s: float
    # From this many images a version also gets a shard plan; the shards' target size.
    shard_threshold: int = DEFAULT_SHARD_THRESHOLD
    shard_bytes: int = DEFAULT_SHARD_BYTES

    @classmethod
    def from_env(cls, env: Env | None = None) -> SplitSettings:
        env = _env(env)
        return cls(
            common=CommonSettings.read(env),
            min_new_images=int(env.get("MIN_NEW_IMAGES") or "1"),
            state_machine_arn=env.get("STATE_MACHINE_ARN") or None,
            annotate_queue_url=env.get("ANNOTATE_QUEUE_URL") or None,
            annotation_wait_s=float(env.get("ANNOTATION_WAIT_S") or "0"),
            shard_threshold=int(env.get("SHARD_THRESHOLD") or DEFAULT_SHARD_THRESHOLD),
            shard_bytes=int(env.get("SHARD_BYTES") or DEFAULT_SHARD_BYTES),
        )


@dataclass(frozen=True)
class RollbackSettings:
    """The rollback function's: which alarms may roll production back, and for how long after a promotion."""

    data_bucket: str
    # The names of the alarms the rule delivers (ROLLBACK_ALARMS, comma-separated); others are ignored.
    alarms: frozenset[str]
    # RollbackWatchMinutes: an alarm this long after a promotion or later changes nothing; 0 turns it off.
    watch_minutes: int
    # The dataset of an alarm whose metrics carry no ``dataset`` dimension (InferenceDefaultDataset).
    default_dataset: str

    @classmethod
    def from_env(cls, env: Env | None = None) -> RollbackSettings:
        env = _env(env)
        raw = (env.get("ROLLBACK_WATCH_MINUTES") or "0").strip()
        if not raw.isdigit():
            raise ValueError(f"ROLLBACK_WATCH_MINUTES {raw!r} is not a whole number of minutes")
        names = (env.get("ROLLBACK_ALARMS") or "").split(",")
        return cls(
            data_bucket=env.get("DATA_BUCKET", ""),
            alarms=frozenset(n.strip() for n in names if n.strip()),
            watch_minutes=int(raw),
            default_dataset=env.get("DEFAULT_DATASET", ""),
        )


@dataclass(frozen=True)
class GateSettings:
    # '' or unset: each preset's own accuracy threshold.
    min_accuracy_override: float | None

    @classmethod
    def from_env(cls, env: Env | None = None) -> GateSettings:
        raw = (_env(env).get("MIN_ACCURACY_OVERRIDE") or "").strip()
        return cls(min_accuracy_override=float(raw) if raw else None)


@dataclass(frozen=True)
class PromoteSettings:
    # CandidateTrial: a passed model becomes the candidate beside production instead of replacing it.
    candidate_trial: bool
    # The topic a sign-off request is published to (ApprovalRequired); empty publishes none.
    sign_off_topic_arn: str = ""

    @classmethod
    def from_env(cls, env: Env | None = None) -> PromoteSettings:
        raw = (_env(env).get("CANDIDATE_TRIAL") or "false").strip().lower()
        if raw not in ("true", "false"):
            raise ValueError(f"CANDIDATE_TRIAL {raw!r} is not true or false")
        topic = (_env(env).get("SIGN_OFF_TOPIC_ARN") or "").strip()
        return cls(candidate_trial=raw == "true", sign_off_topic_arn=topic)


@dataclass(frozen=True)
class BulkImportSettings:
    common: CommonSettings
    data_bucket: str
    # BulkImportSourceBuckets: the buckets the stack's roles may read (comma-separated names).
    source_buckets: frozenset[str]

    @classmethod
    def from_env(cls, env: Env | None = None) -> BulkImportSettings:
        env = _env(env)
        names = (env.get("BULK_IMPORT_SOURCE_BUCKETS") or "").split(",")
        return cls(
            common=CommonSettings.read(env),
            data_bucket=env.get("DATA_BUCKET", ""),
            source_buckets=frozenset(n.strip() for n in names if n.strip()),
        )
