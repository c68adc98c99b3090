"""TFRecord files of ``tf.train.Example`` records, written without TensorFlow.

A training channel of a large manifest version is packed into shards of about 150 MB so that a job reads
a few large objects instead of a million small ones. The split side must not need TensorFlow (the Lambda
layer carries none), and both formats are small: a record is framed as its length (uint64, little-endian),
the masked CRC32C of those 8 bytes, the data, and the masked CRC32C of the data; an Example is a protobuf
map of feature name to a list of bytes, encoded here field by field.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Mapping
from typing import BinaryIO

import crc32c

_MASK_DELTA = 0xA282EAD8


def masked_crc(data: bytes) -> int:
    """TFRecord's checksum: CRC32C rotated right by 15 bits plus a constant (so CRCs of CRCs differ)."""
    crc = crc32c.crc32c(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def frame(record: bytes) -> bytes:
    length = struct.pack("<Q", len(record))
    return length + struct.pack("<I", masked_crc(length)) + record + struct.pack("<I", masked_crc(record))


def read_records(stream: BinaryIO) -> Iterator[bytes]:
    """The records of a TFRecord file, each checked against its checksums."""
    while header := stream.read(12):
        if len(header) < 12:
            raise ValueError("TFRecord file ends inside a record header")
        length_bytes, length_crc = header[:8], struct.unpack("<I", header[8:])[0]
        if masked_crc(length_bytes) != length_crc:
            raise ValueError("TFRecord length checksum mismatch")
        (length,) = struct.unpack("<Q", length_bytes)
        data = stream.read(length)
        footer = stream.read(4)
        if len(data) < length or len(footer) < 4 or masked_crc(data) != struct.unpack("<I", footer)[0]:
            raise ValueError("TFRecord data is truncated or its checksum does not match")
        yield data


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (wire type 2)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def example(features: Mapping[str, bytes]) -> bytes:
    """A serialized ``tf.train.Example`` whose every feature is a one-value ``bytes_list``.

    Example.features (1) -> Features.feature (1, a map entry: key 1, value 2) -> Feature.bytes_list (1)
    -> BytesList.value (1)."""
    entries = b"".join(
        _field(1, _field(1, name.encode("utf-8")) + _field(2, _field(1, _field(1, value))))
        for name, value in features.items()
    )
    return _field(1, entries)


def image_record(image: bytes, label: str, key: str, sha256: str) -> bytes:
    """One framed record of a packed image: the bytes as uploaded, its label, key and digest."""
    return frame(
        example({"image": image, "label": label.encode(), "key": key.encode(), "sha256": sha256.encode()})
    )
