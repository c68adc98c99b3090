"""The manifest version a command trains on and its preset, read from the data bucket.

`medimage pipeline start` and `medimage train --on sagemaker` both start training on what the split
Lambda wrote (``manifests/<dataset>/latest.json``, the version's channel manifests, ``stats.json`` and,
for a version large enough to train from TFRecord shards, its shard plan ``shards.json``); one lookup
gives them the same answers and the same `ManifestProblem` codes."""

from __future__ import annotations

from dataclasses import dataclass

from medimage.adapters.s3 import S3ObjectStore
from medimage.core import layout
from medimage.core import training_job as job
from medimage.core.errors import ManifestProblem
from medimage.core.shards import SHARD_PLAN

MANIFEST_FILES = tuple(f"{split}.manifest" for _, split in job.CHANNELS)


@dataclass(frozen=True)
class ManifestChoice:
    dataset: str
    version: str
    preset: str
    # The keys of the version's planned shards; empty when it trains from its files (no shards.json).
    shards: tuple[str, ...] = ()

    @property
    def prefix(self) -> str:
        return layout.manifest_prefix(self.dataset, self.version)


def unpacked_shards(store: S3ObjectStore, manifest: ManifestChoice) -> list[str]:
    """The planned shards not written yet (the training workflow's PackShards step writes them)."""
    packed = set(store.list_keys(f"{manifest.prefix}shards/"))
    return [key for key in manifest.shards if key not in packed]


def find_manifest(
    store: S3ObjectStore, dataset: str, version: str | None = None, preset: str | None = None
) -> ManifestChoice:
    """The dataset's manifest version (its newest when none is named: ``latest.json``) and its preset
    (from its ``stats.json`` unless given); each of its channel manifests must be there, since the
    training job reads them."""
    dataset = layout.check_dataset_name(dataset)
    where = f"s3://{store.bucket}/{layout.MANIFESTS_PREFIX}{dataset}/"
    if version is None:
        latest = store.get_json(layout.latest_manifest_key(dataset))
        if not isinstance(latest, dict) or not latest.get("version"):
            raise ManifestProblem(
                f"no manifest for dataset {dataset!r} ({where}latest.json is missing): upload images with "
                f"`medimage ingest DIR --dataset {dataset} --commit` first",
                "no_manifest",
            )
        version = str(latest["version"])
    prefix = layout.manifest_prefix(dataset, version)
    missing = [name for name in MANIFEST_FILES if not store.exists(prefix + name)]
    if missing:
        known = sorted(_versions(store, dataset))
        hint = f"; versions there: {', '.join(known[-5:])}" if known else f"; {where} has none"
        raise ManifestProblem(
            f"manifest version {version!r} of dataset {dataset!r} not found (s3://{store.bucket}/{prefix} "
            f"lacks {', '.join(missing)}){hint}",
            "no_manifest",
        )
    if not preset:
        stats = store.get_json(prefix + "stats.json")
        preset = str(stats.get("preset") or "") if isinstance(stats, dict) else ""
        if not preset:
            raise ManifestProblem(
                f"s3://{store.bucket}/{prefix}stats.json names no preset: pass --preset", "no_preset"
            )
    plan = store.get_json(prefix + SHARD_PLAN)
    shards = tuple(str(entry["key"]) for entry in plan) if isinstance(plan, list) else ()
    return ManifestChoice(dataset, version, preset, shards)


def _versions(store: S3ObjectStore, dataset: str) -> set[str]:
    prefix = f"{layout.MANIFESTS_PREFIX}{dataset}/"
    return {
        key[len(prefix) :].split("/", 1)[0] for key in store.list_keys(prefix) if key.endswith(".manifest")
    }
