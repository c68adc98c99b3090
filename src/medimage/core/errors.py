"""Every error of the pipeline, each with its stable machine-readable code (one place to read them all).

A rejected upload is quarantined with its code; an API client gets it in a 4xx body; a Step Functions
Retry or Catch matches the class name (the Lambda ``errorType``). AWS-level retryable failures are
`medimage.adapters.transient.TransientError`."""

from __future__ import annotations


class MedimageError(Exception):
    """Base error: `code` is stable and machine-readable, the message is for people."""

    code = "error"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        return str(self)

    def as_reason(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


class RejectedInput(MedimageError):
    """An uploaded object that cannot be accepted; it goes to quarantine with this reason."""

    code = "rejected"


class UnknownPreset(MedimageError):
    code = "unknown_preset"


# ---------------------------------------------------------------- events and storage


class BadEvent(MedimageError):
    """An event that is not the S3 / EventBridge shape the function is wired to."""

    code = "bad_event"


class BadS3Uri(MedimageError):
    """A string that should be an s3://bucket/key URI and is not."""

    code = "bad_s3_uri"


# ---------------------------------------------------------------- the pipeline's contracts and rules


class BadExecutionInput(MedimageError):
    """A training execution input that breaks the contract (docs/CONTRACTS.md)."""

    code = "bad_execution_input"


class RegistryError(MedimageError):
    """A production pointer change the registry rules forbid."""

    code = "registry"


class ChampionChanged(MedimageError):
    """The production model changed after the gate compared against it: the gate must run again.

    The class name is the Lambda ``errorType`` that the state machine catches to re-run the gate."""

    code = "champion_changed"


class AnnotationInProgress(MedimageError):
    """Uploads before the `_commit` are still being annotated: retried, so the manifest includes them."""

    code = "annotation_in_progress"


class ManifestConflict(MedimageError):
    """Other commits kept moving ``latest.json`` while this one tried to: retried."""

    code = "manifest_conflict"


class GateInputError(MedimageError):
    """The gate task's input or the job's model.tar.gz breaks the trainer's contract."""

    code = "bad_gate_input"


class PromoteRefused(MedimageError):
    """A model promote must not publish (no passed gate decision, missing files)."""

    code = "promote_refused"


class BadModelArtifacts(MedimageError):
    """A training job's model.tar.gz that is missing, unreadable or unsafe."""

    code = "bad_model_artifacts"


# ---------------------------------------------------------------- training


class TrainingInputError(MedimageError):
    """Input the trainer cannot learn from (empty channel, missing class, unreadable image...)."""

    code = "bad_training_input"


class ExportError(MedimageError):
    """The exported TFLite model disagrees with the trained network."""

    code = "export_failed"


class AndroidExportError(MedimageError):
    """The model for the Android app cannot be made. Codes: ``model_not_found`` (no model directory),
    ``no_keras_model`` (no ``model.keras`` in it), ``bad_keras_model``, ``bad_model_json``,
    ``tflite_support_missing`` (no tflite-support environment), ``metadata_failed``, ``export_mismatch``
    (the RGB graph disagrees with the network), ``task_library_failed``."""

    code = "android_export"


# ---------------------------------------------------------------- serving


class ModelError(MedimageError):
    """A model directory or file that cannot be served."""

    code = "bad_model"


class NoProductionModel(MedimageError):
    """No model has been promoted for the dataset yet (HTTP 503: retry after a promotion)."""

    code = "no_model"


class ModelUnavailable(MedimageError):
    """A production model exists but none can be served right now (HTTP 503)."""

    code = "model_unavailable"


# ---------------------------------------------------------------- talking to a deployed stack


class IngestProblem(MedimageError):
    """A local folder or upload that `medimage ingest` cannot take."""

    code = "ingest"


class BulkImportProblem(MedimageError):
    """A bulk import from S3 that cannot start or run. Codes: ``not_label_tree`` (no key under the prefix
    sits in a label folder), ``source_unreadable`` (the source bucket or prefix cannot be listed or read),
    ``source_not_allowed`` (the stack's BulkImportSourceBuckets does not name the bucket),
    ``unknown_dataset`` (no preset governs the dataset), ``bad_import_input``, ``import_failed``."""

    code = "bulk_import"


class PipelineProblem(MedimageError):
    """A training execution that cannot be started or found."""

    code = "pipeline"


class ManifestProblem(MedimageError):
    """A manifest version to train on that the bucket lacks. Codes: ``no_manifest`` (no ``latest.json``,
    or the version's channel manifests are missing), ``no_preset`` (its ``stats.json`` names none),
    ``no_shards`` (shards asked of a version without a shard plan), ``shards_not_packed`` (a planned
    shard is not written yet)."""

    code = "no_manifest"


class DeployProblem(MedimageError):
    """A deployment step that cannot run."""

    code = "deploy"


class SageMakerJobProblem(MedimageError):
    """A SageMaker training job that cannot be launched or that failed (a missing manifest version is a
    `ManifestProblem`). Codes: ``no_training_source`` (the source tarball is not uploaded),
    ``no_pretrained_weights`` (nor are the ImageNet weights), ``bad_hyperparameter``, ``sdk_missing`` (no
    SageMaker SDK environment), ``sdk_failed`` (the SDK or SageMaker refused the job), ``job_failed``."""

    code = "sagemaker_job"


class AwsProblem(MedimageError):
    """AWS said no (credentials, region, a missing stack or bucket): one line for the person at the shell."""

    code = "aws"


# ---------------------------------------------------------------- the local stack


class UpProblem(MedimageError):
    """`medimage up` cannot start: a port in use, an unreadable template, a missing dependency."""

    code = "up_failed"
