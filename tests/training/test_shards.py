"""Shards: a version packed into TFRecord files trains on exactly the images its files would give."""

from __future__ import annotations

import hashlib
import io
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "services"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fakes import InMemoryCatalog, InMemoryObjectStore

from medimage.core.catalog import CatalogRecord
from medimage.core.errors import TrainingInputError
from medimage.core.manifests import read_csv
from medimage.core.preprocess import PreprocessSpec
from medimage.core.presets import SPLITS, get_preset
from medimage.core.shards import SHARD_PLAN, ShardSpec
from medimage.core.splits import assign_split, group_of
from medimage.core.tfrecord import image_record, read_records
from medimage.local.synthetic import generate
from medimage.services.datasets import DatasetResolver
from medimage.services.pack import ShardPacker, ShardSourceMissing
from medimage.services.split import Splitter
from medimage.training.data import channel_records, load_channel

DS = "chestxray2017"
NOW = datetime(2026, 12, 1, tzinfo=UTC)
SPEC = PreprocessSpec(image_size=16, channels=1)


def sharded_version(tmp_path: Path, shard_bytes: int = 4000) -> tuple[InMemoryObjectStore, str, list[dict]]:
    """60 synthetic X-rays in the bucket and the catalog, committed with shards of ``shard_bytes``."""
    store, catalog = InMemoryObjectStore(), InMemoryCatalog()
    preset = get_preset(DS)
    for f in generate(preset, per_class=20, size=24, seed=3):
        key = f"incoming/labeled/{DS}/{f.folder}/{f.filename}"
        sha = hashlib.sha256(f.data).hexdigest()
        patient = preset.patient_id(f.filename)
        group = group_of(patient, sha)
        label = preset.label_for(f.folder, f.filename)
        store.put_bytes(key, f.data)
        catalog.record_image(
            CatalogRecord(
                DS,
                sha,
                key,
                label,
                patient,
                group,
                assign_split(DS, group, preset.split_ratios),
                24,
                24,
                "L",
                "jpeg",
                len(f.data),
                NOW.isoformat(),
            )
        )
    splitter = Splitter(
        store,
        catalog,
        DatasetResolver(),
        None,
        1,
        clock=lambda: NOW,
        shard_threshold=10,
        shard_bytes=shard_bytes,
    )
    result = splitter.commit(DS)
    assert result.stats["input"] == "shards"
    prefix = f"manifests/{DS}/{result.version}/"
    return store, prefix, store.get_json(prefix + SHARD_PLAN)


def write_files_channel(store: InMemoryObjectStore, prefix: str, split: str, target: Path) -> Path:
    """A channel as File mode delivers a ManifestFile: the CSV, and every image at its key."""
    csv_text = store.get_text(f"{prefix}{split}.csv")
    (target / "manifests").mkdir(parents=True)
    (target / "manifests" / f"{split}.csv").write_text(csv_text)
    for row in read_csv(csv_text):
        (target / row["key"]).parent.mkdir(parents=True, exist_ok=True)
        (target / row["key"]).write_bytes(store.get_bytes(row["key"]))
    return target


def write_shard_channel(store: InMemoryObjectStore, plan: list[dict], split: str, target: Path) -> Path:
    """A channel as FastFile mode shows an S3Prefix: the shard files."""
    target.mkdir(parents=True)
    for spec in (ShardSpec.from_dict(s) for s in plan if s["split"] == split):
        (target / spec.key.rsplit("/", 1)[1]).write_bytes(store.get_bytes(spec.key))
    return target


def test_shards_and_files_give_the_same_examples_and_label_counts(tmp_path):
    store, prefix, plan = sharded_version(tmp_path)
    packer = ShardPacker(store, readers=4)
    results = [packer.pack(prefix, ShardSpec.from_dict(s)) for s in plan]
    assert {r.status for r in results} == {"written"}
    assert len([s for s in plan if s["split"] == "train"]) > 1  # small shards: the train split spans several
    assert [packer.pack(prefix, ShardSpec.from_dict(s)).status for s in plan] == ["exists"] * len(plan)
    for split in SPLITS:
        files = load_channel(
            split, write_files_channel(store, prefix, split, tmp_path / "files" / split), SPEC
        )
        shards = load_channel(
            split, write_shard_channel(store, plan, split, tmp_path / "shards" / split), SPEC
        )
        assert len(shards) == len(files) > 0
        assert Counter(shards.labels) == Counter(files.labels)
        assert np.array_equal(shards.x, files.x)  # same images, same order (the CSV's)
        assert [p.read_bytes() for p in shards.paths] == [p.read_bytes() for p in files.paths]


def test_a_shard_is_a_tfrecord_file_tensorflow_reads(tmp_path):
    store, prefix, plan = sharded_version(tmp_path, shard_bytes=10**9)
    [train] = [ShardSpec.from_dict(s) for s in plan if s["split"] == "train"]
    ShardPacker(store).pack(prefix, train)
    data = store.get_bytes(train.key)
    assert len(list(read_records(io.BytesIO(data)))) == train.rows
    path = write_shard_channel(store, plan, "train", tmp_path / "train")
    keys = [r["key"].decode() for r in channel_records("train", path).as_numpy_iterator()]
    assert keys == [row["key"] for row in read_csv(store.get_text(f"{prefix}train.csv"))]


def test_a_corrupt_shard_or_a_missing_image_fails_with_its_reason(tmp_path):
    store, prefix, plan = sharded_version(tmp_path, shard_bytes=10**9)
    [val] = [ShardSpec.from_dict(s) for s in plan if s["split"] == "val"]
    first_key = read_csv(store.get_text(f"{prefix}val.csv"))[0]["key"]
    store.delete(first_key)
    with pytest.raises(ShardSourceMissing, match="missing from the bucket"):
        ShardPacker(store).pack(prefix, val)
    assert not store.exists(val.key)
    broken = tmp_path / "broken"
    broken.mkdir()
    record = image_record(b"not an image", "normal", "k/x.jpeg", "0" * 64)
    (broken / "validation-00000.tfrecord").write_bytes(record)
    with pytest.raises(TrainingInputError, match=r"image k/x.jpeg"):
        load_channel("validation", broken, SPEC)
