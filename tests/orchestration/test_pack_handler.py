"""The pack handler on moto: one entry of shards.json in, one TFRecord file out under the version's shard
folder, written once; a missing image or a request outside the version fails with its code."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from medimage.core.manifests import CSV_FIELDS
from medimage.core.shards import ShardSpec
from medimage.local.account import REGION
from medimage.local.functions import LocalFunction
from medimage.services.pack import BadPackRequest, ShardSourceInvalid, ShardSourceMissing
from tests.orchestration.shard_helpers import (
    csv_rows,
    manifest_prefix,
    put_sharded_version,
    shard_records,
)

REPO = Path(__file__).resolve().parents[2]
BUCKET = "medimage-pack-test"
VERSION = "20261201T000000Z-0a1b2c3d"
PREFIX = manifest_prefix(VERSION)


@pytest.fixture
def s3() -> Iterator[Any]:
    from moto import mock_aws

    from medimage.adapters.aws import reset_clients

    with mock_aws():
        reset_clients()
        client = boto3.client("s3", region_name=REGION)
        client.create_bucket(Bucket=BUCKET)
        yield client
        reset_clients()


@pytest.fixture
def pack() -> LocalFunction:
    return LocalFunction(
        "PackFunction", REPO / "functions" / "pack", "app.lambda_handler", {"POWERTOOLS_SERVICE_NAME": "pack"}
    )


def event(shard: dict[str, Any], prefix: str = PREFIX) -> dict[str, Any]:
    return {"bucket": BUCKET, "manifest_prefix": prefix, "shard": shard}


def test_a_shard_is_packed_once_from_its_rows_images(s3, pack):
    plan = put_sharded_version(s3, BUCKET, VERSION)
    train = [s for s in plan if s["split"] == "train"]
    assert len(train) > 1, "small shards: the train split spans several"
    second = train[1]

    result = pack.invoke(event(second))

    assert result == {
        "key": second["key"],
        "status": "written",
        "images": second["rows"],
        "bytes": result["bytes"],
    }
    assert second["key"].startswith(f"{PREFIX}shards/train/")
    data = s3.get_object(Bucket=BUCKET, Key=second["key"])["Body"].read()
    assert len(data) == result["bytes"]
    records = shard_records(data)
    rows = csv_rows(s3, BUCKET, VERSION, "train")[second["first_row"] : second["first_row"] + second["rows"]]
    assert len(records) == second["rows"] == len(rows)
    for record, row in zip(records, rows, strict=True):
        image = s3.get_object(Bucket=BUCKET, Key=row["key"])["Body"].read()
        assert image in record and row["key"].encode() in record and row["label"].encode() in record
    written = s3.head_object(Bucket=BUCKET, Key=second["key"])["LastModified"]

    again = pack.invoke(event(second))

    assert again["status"] == "exists" and again["key"] == second["key"]
    assert s3.head_object(Bucket=BUCKET, Key=second["key"])["LastModified"] == written


def test_a_missing_image_fails_the_shard_and_leaves_no_partial_upload(s3, pack):
    """Three 3 MB images fill a multipart part before the fourth, missing, one is reached."""
    keys = [f"incoming/labeled/chestxray2017/NORMAL/big-{i}.jpeg" for i in range(4)]
    for key in keys[:3]:
        s3.put_object(Bucket=BUCKET, Key=key, Body=os.urandom(3 * 1024 * 1024))
    lines = [",".join(CSV_FIELDS)] + [f"{k},normal,{'0' * 64}," for k in keys]
    s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}train.csv", Body="\n".join(lines).encode())
    spec = ShardSpec(
        "train", "train", 0, 0, 4, 12 * 1024 * 1024, f"{PREFIX}shards/train/train-00000.tfrecord"
    )

    with pytest.raises(ShardSourceMissing, match="missing from the bucket") as failed:
        pack.invoke(event(spec.to_dict()))

    assert failed.value.code == "shard_source_missing"
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{PREFIX}shards/")
    assert not s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads")


def test_a_plan_that_outruns_its_csv_fails_the_shard(s3, pack):
    plan = put_sharded_version(s3, BUCKET, VERSION)
    last = [s for s in plan if s["split"] == "test"][-1]
    with pytest.raises(ShardSourceMissing, match="rows planned"):
        pack.invoke(event({**last, "rows": last["rows"] + 5}))


def test_a_csv_that_is_not_a_manifest_fails_the_shard_with_its_code(s3, pack):
    s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}train.csv", Body=b"name,label\nx.jpeg,normal\n")
    with pytest.raises(ShardSourceInvalid, match="lacks columns") as failed:
        pack.invoke(event(SHARD))
    assert failed.value.code == "shard_source_invalid"


SHARD = ShardSpec("train", "train", 0, 0, 2, 100, f"{PREFIX}shards/train/train-00000.tfrecord").to_dict()


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        ({"bucket": BUCKET, "manifest_prefix": PREFIX}, "lacks 'shard'"),
        (event({**SHARD, "key": "models/chestxray2017/production.json"}), "is not a .tfrecord file under"),
        (event({**SHARD, "key": f"{PREFIX}shards/train/../../../x.tfrecord"}), "is not a .tfrecord file"),
        (event({**SHARD, "split": "holdout"}), "unknown split"),
        (event(SHARD, prefix="incoming/labeled/chestxray2017/"), "is not manifests/<dataset>/<version>/"),
        (event({**SHARD, "rows": 0}), "plans 0 rows"),
        (event({**SHARD, "first_row": "0"}), "must be integers"),
        (event({k: v for k, v in SHARD.items() if k != "index"}), "lacks 'index'"),
        (event("train-00000"), "an entry of shards.json"),
    ],
)
def test_a_bad_request_is_refused_with_its_code(s3, pack, bad, why):
    with pytest.raises(BadPackRequest, match=why) as refused:
        pack.invoke(bad)
    assert refused.value.code == "bad_pack_request"
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET)
