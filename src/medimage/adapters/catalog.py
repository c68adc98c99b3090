"""The image catalog in DynamoDB: one item per accepted image (key dataset + ``img#<sha256>``) and one per
quarantined object (``q#<key>``). Writes are conditional, so every handler stays idempotent.

An item keeps its fields in one JSON attribute (``record`` / ``reason``): items stay small (fewer
attribute names to pay for) and a split reads 20,000 records in a few pages, a page at a time.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

from botocore.exceptions import ClientError

from medimage.adapters.aws import client
from medimage.core.catalog import CatalogPage, CatalogRecord, CatalogSnapshot, RecordOutcome

IMAGE_PREFIX = "img#"
QUARANTINE_PREFIX = "q#"


def to_dynamo_item(record: CatalogRecord) -> dict[str, Any]:
    return {
        "dataset": {"S": record.dataset},
        "item": {"S": IMAGE_PREFIX + record.sha256},
        "record": {"S": json.dumps(record.to_item(), separators=(",", ":"))},
    }


class DynamoCatalog:
    def __init__(self, table: str, dynamodb: Any | None = None) -> None:
        self.table = table
        self._db = dynamodb or client("dynamodb")

    def record_image(self, record: CatalogRecord) -> RecordOutcome:
        """Insert once per (dataset, content). A second delivery of the same key is a no-op; the same
        bytes under another key are added to the first record's ``duplicate_keys`` set (idempotent)."""
        item = to_dynamo_item(record)
        try:
            self._db.put_item(
                TableName=self.table,
                Item=item,
                ConditionExpression="attribute_not_exists(#item)",
                ExpressionAttributeNames={"#item": "item"},
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
            return RecordOutcome.NEW
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            old = exc.response.get("Item") or {}
        if json.loads(old.get("record", {}).get("S", "{}")).get("key") == record.key:
            return RecordOutcome.REDELIVERED
        self._db.update_item(
            TableName=self.table,
            Key={"dataset": {"S": record.dataset}, "item": {"S": IMAGE_PREFIX + record.sha256}},
            UpdateExpression="ADD duplicate_keys :k",
            ExpressionAttributeValues={":k": {"SS": [record.key]}},
        )
        return RecordOutcome.DUPLICATE

    def record_quarantine(self, dataset: str, key: str, code: str, message: str, at: str) -> None:
        self._db.put_item(
            TableName=self.table,
            Item={
                "dataset": {"S": dataset},
                "item": {"S": QUARANTINE_PREFIX + key},
                "reason": {"S": json.dumps({"key": key, "code": code, "message": message, "at": at})},
            },
        )

    def snapshot(self, dataset: str) -> CatalogSnapshot:
        """Every record of a dataset, with duplicate and quarantine counts (in memory: small datasets)."""
        records: list[CatalogRecord] = []
        duplicates = 0
        quarantined: Counter[str] = Counter()
        for page in self.pages(dataset):
            records.extend(page.records)
            duplicates += page.duplicates
            quarantined.update(page.quarantined)
        return CatalogSnapshot(records=records, duplicates=duplicates, quarantined=dict(quarantined))

    def pages(self, dataset: str) -> Iterator[CatalogPage]:
        """The dataset's partition one Query page (up to 1 MB) at a time, images in sha256 order."""
        paginator = self._db.get_paginator("query")
        pages = paginator.paginate(
            TableName=self.table,
            KeyConditionExpression="dataset = :d",
            ExpressionAttributeValues={":d": {"S": dataset}},
        )
        for page in pages:
            records: list[CatalogRecord] = []
            duplicates = 0
            quarantined: Counter[str] = Counter()
            for raw in page.get("Items", []):
                kind = raw["item"]["S"]
                if kind.startswith(IMAGE_PREFIX):
                    records.append(CatalogRecord.from_item(json.loads(raw["record"]["S"])))
                    duplicates += len(raw.get("duplicate_keys", {}).get("SS", ()))
                elif kind.startswith(QUARANTINE_PREFIX):
                    quarantined[json.loads(raw["reason"]["S"])["code"]] += 1
            yield CatalogPage(records=records, duplicates=duplicates, quarantined=dict(quarantined))
