"""Training channels (manifest CSV + images at ``<channel dir>/<key>``, or TFRecord shards) to arrays.

Every image goes through ``medimage.core.preprocess.load_image_array``, the function serving uses, so
what the network learns from is exactly what it will be shown in production. The arrays are kept as
uint8: the shared preprocessing yields whole numbers 0..255 (decoded 8-bit pixels, resized by PIL in
8-bit mode), so this is lossless and takes a quarter of the memory of float32.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medimage.core.errors import RejectedInput, TrainingInputError
from medimage.core.manifests import CSV_FIELDS, read_csv
from medimage.core.preprocess import PreprocessSpec, load_image_array
from medimage.core.shards import IMAGE_FEATURES


@dataclass(frozen=True)
class Channel:
    name: str
    x: np.ndarray  # N x H x W x C, uint8
    labels: list[str]  # one per image
    paths: list[Path]

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class LabeledChannels:
    """The loaded channels, the class order, and each channel's class indices in that order."""

    channels: dict[str, Channel]
    labels: list[str]
    y: dict[str, np.ndarray]


def find_manifest_csv(channel_dir: Path) -> Path:
    """The one ``*.csv`` with the manifest header anywhere under the channel dir."""
    if not channel_dir.is_dir():
        raise TrainingInputError(f"channel directory {channel_dir} does not exist")
    header = ",".join(CSV_FIELDS)
    found = []
    for path in sorted(channel_dir.rglob("*.csv")):
        with path.open(encoding="utf-8") as handle:
            if handle.readline().strip().lstrip("\ufeff") == header:
                found.append(path)
    if not found:
        raise TrainingInputError(f"channel {channel_dir} has no manifest CSV (header '{header}')")
    if len(found) > 1:
        names = ", ".join(str(p.relative_to(channel_dir)) for p in found)
        raise TrainingInputError(f"channel {channel_dir} has several manifest CSVs: {names}")
    return found[0]


def read_channel_rows(name: str, channel_dir: Path) -> list[dict[str, str]]:
    """The CSV rows of a channel; an empty channel is an error (nothing to learn from or score)."""
    csv_path = find_manifest_csv(channel_dir)
    try:
        rows = read_csv(csv_path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise TrainingInputError(f"channel '{name}': {csv_path}: {exc}") from None
    if not rows:
        raise TrainingInputError(f"channel '{name}' is empty: {csv_path} lists no images")
    return rows


def shard_files(channel_dir: Path) -> list[Path]:
    """The TFRecord shards of a sharded channel (``medimage.core.shards``), in name order; [] for files."""
    return sorted(channel_dir.rglob("*.tfrecord")) if channel_dir.is_dir() else []


def check_channel(name: str, channel_dir: Path) -> None:
    """Fail fast, before TensorFlow loads: a channel of files needs its CSV and rows; shards are checked
    as they are read (their records carry their checksums)."""
    if not shard_files(channel_dir):
        read_channel_rows(name, channel_dir)


def channel_records(name: str, channel_dir: Path) -> Any:
    """Every image of a channel as a ``tf.data`` dataset of ``{"key", "label", "image"}`` (the bytes as
    uploaded): read from TFRecord shards, or from the manifest CSV and the files beside it. The one path
    by which the trainer reads a channel, whatever its layout."""
    import tensorflow as tf

    shards = shard_files(channel_dir)
    if shards:
        features = {n: tf.io.FixedLenFeature([], tf.string) for n in IMAGE_FEATURES}
        records = tf.data.TFRecordDataset([str(p) for p in shards])
        return records.map(lambda r: tf.io.parse_single_example(r, features))
    rows = read_channel_rows(name, channel_dir)
    for row in rows:
        if not (channel_dir / row["key"]).is_file():
            raise TrainingInputError(f"channel '{name}': cannot read image {row['key']}: no such file")
    table = {
        "key": [row["key"] for row in rows],
        "label": [row["label"] for row in rows],
        "path": [str(channel_dir / row["key"]) for row in rows],
    }
    return tf.data.Dataset.from_tensor_slices(table).map(
        lambda r: {"key": r["key"], "label": r["label"], "image": tf.io.read_file(r["path"])}
    )


def load_channel(name: str, channel_dir: Path, spec: PreprocessSpec) -> Channel:
    """A channel decoded to arrays by the serving preprocessing. Each image keeps a file path (the
    packaging step re-reads validation and test images from it): a channel of files keeps its own, a
    sharded channel's images are written out under a scratch folder as they are read."""
    shards = shard_files(channel_dir)
    scratch = Path(tempfile.mkdtemp(prefix=f"{name}-images-")) if shards else None
    images: list[np.ndarray] = []
    labels: list[str] = []
    paths: list[Path] = []
    for record in channel_records(name, channel_dir).as_numpy_iterator():
        key = record["key"].decode("utf-8")
        data = bytes(record["image"])
        try:
            images.append(load_image_array(data, spec))
        except RejectedInput as exc:
            raise TrainingInputError(f"channel '{name}': image {key}: {exc}") from None
        labels.append(record["label"].decode("utf-8"))
        if scratch is None:
            paths.append(channel_dir / key)
        else:
            path = scratch / key
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            paths.append(path)
    if not labels:
        raise TrainingInputError(f"channel '{name}' is empty: {channel_dir} holds no images")
    x = np.stack(images).astype(np.uint8, copy=False)
    return Channel(name=name, x=x, labels=labels, paths=paths)


def class_list(preset_classes: tuple[str, ...] | None, channels: list[Channel]) -> list[str]:
    """The class order (the preset's, or the sorted labels seen); every class must have training images."""
    seen = {label for channel in channels for label in channel.labels}
    classes = list(preset_classes) if preset_classes is not None else sorted(seen)
    stray = seen - set(classes)
    if stray:
        raise TrainingInputError(
            f"labels {sorted(stray)} are not classes of the preset ({', '.join(classes)})"
        )
    train = next(c for c in channels if c.name == "train")
    missing = [label for label in classes if label not in set(train.labels)]
    if missing:
        raise TrainingInputError(f"class(es) {', '.join(missing)} have no training images")
    if len(classes) < 2:
        raise TrainingInputError(f"need at least 2 classes to train a classifier, found {classes}")
    return classes


def indices(channel: Channel, classes: list[str]) -> np.ndarray:
    position = {label: k for k, label in enumerate(classes)}
    return np.array([position[label] for label in channel.labels], dtype=np.int64)


def balanced_class_weights(y: np.ndarray, n_classes: int) -> dict[int, float]:
    """Weights n / (k * count): each class contributes equally to the loss, whatever its size."""
    counts = np.bincount(y, minlength=n_classes)
    return {k: float(len(y) / (n_classes * counts[k])) for k in range(n_classes) if counts[k]}
