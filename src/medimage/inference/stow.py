"""STOW-RS in: each instance of a request checked, then stored for drop-to-label or quarantined (no boto3).

An instance that passes every check that needs no model (a single-frame grayscale DICOM with pixels,
within the size and pixel limits of ``POST /predict``, in the study the path names, of an acquisition
its dataset takes) is written to ``incoming/unlabeled/<dataset>/stow/<name>.dcm``; the bucket's event
then runs drop-to-label on it as on any upload. Every other part is written to quarantine with its
``.reason.json`` (`medimage.services.quarantine`'s record, stage ``stow``), so nothing a PACS sent is
lost: each instance ends in predictions or in quarantine.

The dataset is the one the request names (path or ``?dataset=``), else the first served dataset whose
preset takes the instance's Modality, Body Part Examined and View Position (the default dataset first).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from medimage.core.dicom import read_dicom
from medimage.core.dicomweb import InstanceOutcome, Part, instance_name, part_name
from medimage.core.errors import RejectedInput
from medimage.core.images import ImageLimits, check_dimensions
from medimage.core.layout import UNLABELED_PREFIX, quarantine_key, quarantine_reason_key
from medimage.core.presets import Preset
from medimage.services.ports import ObjectStore
from medimage.services.quarantine import quarantine_reason

STAGE = "stow"
STOW_FOLDER = "stow"  # incoming/unlabeled/<dataset>/stow/: what arrived by STOW-RS


def _utcnow() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).isoformat(timespec="seconds")


def stow_key(dataset: str, name: str) -> str:
    return f"{UNLABELED_PREFIX}{dataset}/{STOW_FOLDER}/{name}"


@dataclass(frozen=True)
class StowTarget:
    """What the request says of where its instances go: a study UID (path) and a dataset (path, query)."""

    study_uid: str | None = None
    dataset: str | None = None


def stow_target(path: str, query: dict[str, str] | None) -> StowTarget | None:
    """The target of ``POST /studies``, ``/studies/{study}``, ``/datasets/{dataset}/studies`` or
    ``/datasets/{dataset}/studies/{study}`` (``?dataset=`` also names the dataset); None: no STOW path.
    The dataset may sit in the path because a PACS is configured with a base URL, to which it appends
    ``/studies``: a query string there would not survive."""
    parts = [p for p in path.split("/") if p]
    dataset = (query or {}).get("dataset") or None
    if len(parts) >= 3 and parts[0] == "datasets":
        dataset, parts = parts[1], parts[2:]
    if not parts or parts[0] != "studies" or len(parts) > 2:
        return None
    return StowTarget(study_uid=parts[1] if len(parts) == 2 else None, dataset=dataset)


@dataclass(frozen=True)
class _Header:
    study: str
    series: str
    sop_instance: str
    sop_class: str


def _read_header(data: bytes) -> _Header | None:
    """The instance's UIDs, read before the image checks so a refusal names the instance; None when the
    header does not parse (pydicom's messages may quote header values: they are dropped)."""
    import io
    import warnings

    import pydicom

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
            return _Header(
                study=str(ds.get("StudyInstanceUID") or ""),
                series=str(ds.get("SeriesInstanceUID") or ""),
                sop_instance=str(ds.get("SOPInstanceUID") or ""),
                sop_class=str(ds.get("SOPClassUID") or ""),
            )
    except Exception:
        return None


class StowStore:
    """Checks and stores the instances of one STOW-RS request through the data bucket's port.

    ``resolve_dataset`` is the inference service's (a 4xx `RejectedInput` for a dataset it does not
    serve); ``preset_of`` the dataset's preset; ``datasets`` the served ones, the default first."""

    def __init__(
        self,
        store: ObjectStore,
        datasets: tuple[str, ...],
        resolve_dataset: Callable[[str | None], str],
        preset_of: Callable[[str], Preset],
        limits: ImageLimits,
        clock: Callable[[], str] | None = None,
    ) -> None:
        self.store = store
        self.datasets = datasets
        self.resolve_dataset = resolve_dataset
        self.preset_of = preset_of
        self.limits = limits
        self.clock = clock or _utcnow

    def store_all(self, parts: list[Part], target: StowTarget) -> list[InstanceOutcome]:
        return [self.store_one(part, target) for part in parts]

    def store_one(self, part: Part, target: StowTarget) -> InstanceOutcome:
        header: _Header | None = None
        dataset: str | None = None
        try:
            if part.media_type != "application/dicom":
                raise RejectedInput(
                    f"a part of type {part.media_type or 'none'}; every part must be application/dicom",
                    "not_dicom",
                )
            if not part.data:
                raise RejectedInput("a part is empty (0 bytes)", "empty")
            header = _read_header(part.data)
            if len(part.data) > self.limits.max_bytes:
                raise RejectedInput(
                    f"the instance is {len(part.data)} bytes, over the limit of {self.limits.max_bytes}",
                    "too_large",
                )
            image = read_dicom(part.data)
            if header is None or not (header.study and header.series and header.sop_instance):
                raise RejectedInput(
                    "the instance lacks a Study, Series or SOP Instance UID", "dicom_unreadable"
                )
            if target.study_uid and header.study != target.study_uid:
                raise RejectedInput(
                    "the instance's Study Instance UID is not the study the request's path names",
                    "study_mismatch",
                )
            check_dimensions(image.width, image.height, self.limits)
            tags = image.tags
            dataset = self._dataset(target.dataset, tags.modality, tags.body_part, tags.view_position)
        except RejectedInput as exc:
            return self._quarantine(part, header, dataset or self._fallback(target.dataset), exc)
        key = stow_key(dataset, instance_name(header.study, header.series, header.sop_instance))
        self.store.put_bytes(key, part.data, "application/dicom")
        return InstanceOutcome(
            header.sop_class,
            header.sop_instance,
            stored=True,
            retrieve_url=f"s3://{self.store.bucket}/{key}",
        )

    def _dataset(self, asked: str | None, modality: str, body_part: str, view: str) -> str:
        if asked:
            dataset = self.resolve_dataset(asked)
            self.preset_of(dataset).dicom.check(modality, body_part, view)
            return dataset
        for dataset in self.datasets:
            try:
                self.preset_of(dataset).dicom.check(modality, body_part, view)
            except RejectedInput:
                continue
            return dataset
        raise RejectedInput(
            "no served dataset takes this acquisition (Modality, Body Part Examined, View Position); "
            "name one in the path or with ?dataset=",
            "no_dataset",
        )

    def _fallback(self, asked: str | None) -> str | None:
        """The quarantine folder of a refused part: the dataset asked for when it is served."""
        try:
            return self.resolve_dataset(asked) if asked else None
        except RejectedInput:
            return None

    def _quarantine(
        self, part: Part, header: _Header | None, dataset: str | None, exc: RejectedInput
    ) -> InstanceOutcome:
        """Write the refused part and its reason (it never was under incoming/, so nothing is moved)."""
        if header is not None and header.study and header.series and header.sop_instance:
            name = instance_name(header.study, header.series, header.sop_instance)
        else:
            name = part_name(part.data)
        original = stow_key(dataset or "_unknown", name)
        self.store.put_bytes(quarantine_key(dataset, original), part.data, "application/octet-stream")
        self.store.put_json(
            quarantine_reason_key(dataset, original),
            quarantine_reason(exc, original, self.store.bucket, STAGE, self.clock()),
        )
        return InstanceOutcome(
            header.sop_class if header else "",
            header.sop_instance if header else "",
            stored=False,
            code=exc.code,
            message=exc.message,
        )
