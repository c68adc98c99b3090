"""The adapters a streamed split relies on, on moto: multipart uploads, line reads, catalog pages."""

from __future__ import annotations

import boto3
import pytest
from moto import mock_aws

from medimage.adapters.catalog import DynamoCatalog
from medimage.adapters.s3 import S3ObjectStore, S3Upload
from medimage.core.catalog import CatalogRecord

BUCKET = "data"


@pytest.fixture
def s3():
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


def test_an_upload_over_a_part_is_stored_in_parts_and_read_back_line_by_line(s3):
    lines = [f"line {n:06d} {'x' * 1000}\n".encode() for n in range(11_000)]  # about 11 MB
    upload = S3Upload(s3, BUCKET, "m/train.csv", "text/csv", part_bytes=5 * 1024 * 1024)  # S3's least
    for line in lines:
        upload.write(line)
    assert upload.finish() is True
    head = s3.head_object(Bucket=BUCKET, Key="m/train.csv")
    assert head["ETag"].strip('"').endswith("-3")  # three parts
    read = S3ObjectStore(BUCKET, s3).read_lines("m/train.csv")
    assert read is not None and [line.encode() for line in read] == lines
    assert S3ObjectStore(BUCKET, s3).read_lines("m/absent.csv") is None


def test_an_upload_to_a_key_already_written_is_dropped(s3):
    store = S3ObjectStore(BUCKET, s3)
    store.put_bytes("m/val.csv", b"first\n")
    for part_bytes in (5 * 1024 * 1024, 16):  # one PutObject, then a multipart upload
        upload = S3Upload(s3, BUCKET, "m/val.csv", "text/csv", part_bytes=part_bytes)
        upload.write(b"second " * 10)
        assert upload.finish() is False
    assert store.get_bytes("m/val.csv") == b"first\n"
    assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []


def test_the_catalog_is_read_a_page_at_a_time_in_sha256_order():
    with mock_aws():
        db = boto3.client("dynamodb", region_name="us-east-1")
        db.create_table(
            TableName="catalog",
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[
                {"AttributeName": "dataset", "AttributeType": "S"},
                {"AttributeName": "item", "AttributeType": "S"},
            ],
            KeySchema=[
                {"AttributeName": "dataset", "KeyType": "HASH"},
                {"AttributeName": "item", "KeyType": "RANGE"},
            ],
        )
        catalog = DynamoCatalog("catalog", db)
        for n in (5, 3, 9, 1):
            catalog.record_image(
                CatalogRecord(
                    "ds",
                    f"{n:064x}",
                    f"k/{n}",
                    "a",
                    None,
                    f"sha256:{n}",
                    "train",
                    1,
                    1,
                    "L",
                    "jpeg",
                    1,
                    "2026-01-01T00:00:00+00:00",
                )
            )
        catalog.record_quarantine("ds", "k/bad", "truncated", "cut", "t")
        pages = list(catalog.pages("ds"))
        assert [r.key for p in pages for r in p.records] == ["k/1", "k/3", "k/5", "k/9"]
        assert sum(p.quarantined.get("truncated", 0) for p in pages) == 1
