"""The S3 layout of the one data bucket: every key the pipeline reads or writes is built here.

incoming/labeled/<dataset>/<label>/<file>   labeled images to learn from
incoming/labeled/<dataset>/_commit          closes a batch: split writes a new manifest version
incoming/unlabeled/<dataset>/<file>         images to label automatically
quarantine/<dataset>/<original key>         rejected input (+ ``.reason.json`` beside it)
manifests/<dataset>/<version>/...           train/val/test lists and stats.json
training/<dataset>/<job>/...                SageMaker job output (model.tar.gz)
models/<dataset>/<version>/...              a trained model, its evaluation and gate decision
models/<dataset>/production.json            pointer to the serving version (+ history)
predictions/<dataset>/...                   one JSON per image + batch prediction_output.txt; beside each
                                            JSON a FHIR report (.fhir.json) and, for DICOM, an SR (.sr.dcm)
review/<dataset>/<file>                     an unsure prediction's image for a clinician (+ <file>.json)
pacs/failed/<dataset>/<name>.json           an SR the PACS did not take (STOW-RS refused or unreachable)
trials/<dataset>/<candidate>/...            a candidate's silent trial: pairs/*.jsonl, scorecard.json
                                            (keys built in medimage.core.trial)
pretrained/mobilenet_v2/<file>              ImageNet weights every training job gets (`medimage deploy`)
imports/<dataset>/<import>/...              a bulk import from another bucket: batches/<batch>.json (what
                                            each batch copied, skipped, failed), summary.json, failures.json
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote_plus

from medimage.core.errors import RejectedInput

LABELED_PREFIX = "incoming/labeled/"
UNLABELED_PREFIX = "incoming/unlabeled/"
QUARANTINE_PREFIX = "quarantine/"
MANIFESTS_PREFIX = "manifests/"
TRAINING_PREFIX = "training/"
MODELS_PREFIX = "models/"
PREDICTIONS_PREFIX = "predictions/"
REVIEW_PREFIX = "review/"
PRETRAINED_PREFIX = "pretrained/"
PACS_FAILED_PREFIX = "pacs/failed/"
IMPORTS_PREFIX = "imports/"
# The MobileNetV2 backbone's ImageNet weights: the training jobs' `pretrained` channel (an S3Prefix).
MOBILENET_V2_PREFIX = f"{PRETRAINED_PREFIX}mobilenet_v2/"
COMMIT_MARKER = "_commit"

_DATASET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


def decode_event_key(raw_key: str) -> str:
    """S3 event notifications carry keys URL-encoded with '+' for spaces."""
    return unquote_plus(raw_key)


def check_dataset_name(name: str) -> str:
    if not _DATASET_NAME.match(name):
        raise RejectedInput(f"'{name}' is not a valid dataset name (letters, digits, . _ -)", "bad_dataset")
    return name


@dataclass(frozen=True)
class LabeledKey:
    """A parsed ``incoming/labeled/<dataset>/<folder>/.../<filename>`` key."""

    key: str
    dataset: str
    folder: str
    filename: str

    @property
    def is_commit(self) -> bool:
        return self.folder == "" and self.filename == COMMIT_MARKER


def parse_labeled_key(key: str) -> LabeledKey:
    if not key.startswith(LABELED_PREFIX):
        raise RejectedInput(f"key is not under {LABELED_PREFIX}", "bad_key")
    parts = key[len(LABELED_PREFIX) :].split("/")
    if not parts[0]:
        raise RejectedInput(
            "key has no dataset: expected incoming/labeled/<dataset>/<label>/<file>", "bad_key"
        )
    dataset = check_dataset_name(parts[0])
    if len(parts) == 2 and parts[1] == COMMIT_MARKER:
        return LabeledKey(key=key, dataset=dataset, folder="", filename=COMMIT_MARKER)
    if len(parts) < 3 or not parts[-1]:
        raise RejectedInput(
            "key has no label folder or file name: expected incoming/labeled/<dataset>/<label>/<file>",
            "no_label",
        )
    return LabeledKey(key=key, dataset=dataset, folder=parts[1], filename=parts[-1])


def dataset_of_unlabeled(key: str) -> tuple[str, str]:
    """(dataset, file name) of an ``incoming/unlabeled/<dataset>/.../<file>`` key."""
    if not key.startswith(UNLABELED_PREFIX):
        raise RejectedInput(f"key is not under {UNLABELED_PREFIX}", "bad_key")
    parts = key[len(UNLABELED_PREFIX) :].split("/")
    if len(parts) < 2 or not parts[0] or not parts[-1]:
        raise RejectedInput("expected incoming/unlabeled/<dataset>/<file>", "bad_key")
    return check_dataset_name(parts[0]), parts[-1]


def dataset_of_key(key: str) -> str | None:
    """Best-effort dataset of any incoming key, for quarantining keys that fail to parse."""
    for prefix in (LABELED_PREFIX, UNLABELED_PREFIX):
        if key.startswith(prefix):
            name = key[len(prefix) :].split("/", 1)[0]
            return name if _DATASET_NAME.match(name) else None
    return None


def quarantine_key(dataset: str | None, original_key: str) -> str:
    return f"{QUARANTINE_PREFIX}{dataset or '_unknown'}/{original_key}"


def quarantine_reason_key(dataset: str | None, original_key: str) -> str:
    return quarantine_key(dataset, original_key) + ".reason.json"


def commit_key(dataset: str) -> str:
    return f"{LABELED_PREFIX}{dataset}/{COMMIT_MARKER}"


def manifest_prefix(dataset: str, version: str) -> str:
    return f"{MANIFESTS_PREFIX}{dataset}/{version}/"


def latest_manifest_key(dataset: str) -> str:
    return f"{MANIFESTS_PREFIX}{dataset}/latest.json"


def model_prefix(dataset: str, version: str) -> str:
    return f"{MODELS_PREFIX}{dataset}/{version}/"


def production_pointer_key(dataset: str) -> str:
    return f"{MODELS_PREFIX}{dataset}/production.json"


def prediction_key(dataset: str, original_key: str) -> str:
    own_prefix = f"{UNLABELED_PREFIX}{dataset}/"
    name = original_key[len(own_prefix) :] if original_key.startswith(own_prefix) else original_key
    return f"{PREDICTIONS_PREFIX}{dataset}/{name}.json"


def result_sr_key(dataset: str, original_key: str) -> str:
    """The DICOM SR beside an image's result JSON: ``predictions/<dataset>/<name>.sr.dcm``."""
    return prediction_key(dataset, original_key).removesuffix(".json") + ".sr.dcm"


def result_fhir_key(dataset: str, original_key: str) -> str:
    """The FHIR DiagnosticReport beside an image's result JSON: ``predictions/<dataset>/<name>.fhir.json``."""
    return prediction_key(dataset, original_key).removesuffix(".json") + ".fhir.json"


def review_sr_key(dataset: str, original_key: str) -> str:
    """A clinician's verdict as an SR of its own: ``predictions/<dataset>/<name>.review.sr.dcm``."""
    return prediction_key(dataset, original_key).removesuffix(".json") + ".review.sr.dcm"


def pacs_failure_key(dataset: str, sr_key: str) -> str:
    """``pacs/failed/<dataset>/<name>.json``: why the SR at ``sr_key`` (``predictions/<dataset>/<name>``)
    did not reach the PACS."""
    own_prefix = f"{PREDICTIONS_PREFIX}{dataset}/"
    name = sr_key[len(own_prefix) :] if sr_key.startswith(own_prefix) else sr_key.rsplit("/", 1)[-1]
    return f"{PACS_FAILED_PREFIX}{dataset}/{name}.json"


def review_key(dataset: str, filename: str) -> str:
    """``review/<dataset>/<file>``: the image of a prediction that needs a clinician."""
    return f"{REVIEW_PREFIX}{check_dataset_name(dataset)}/{filename}"


def review_json_key(dataset: str, filename: str) -> str:
    """The prediction JSON beside a review image."""
    return review_key(dataset, filename) + ".json"


def import_prefix(dataset: str, import_id: str) -> str:
    """Where a bulk import (one execution of the bulk-import state machine) records what it did."""
    return f"{IMPORTS_PREFIX}{dataset}/{import_id}/"


def import_batch_key(dataset: str, import_id: str, batch_id: str) -> str:
    return f"{import_prefix(dataset, import_id)}batches/{batch_id}.json"


def import_summary_key(dataset: str, import_id: str) -> str:
    return f"{import_prefix(dataset, import_id)}summary.json"


def import_failures_key(dataset: str, import_id: str) -> str:
    return f"{import_prefix(dataset, import_id)}failures.json"
