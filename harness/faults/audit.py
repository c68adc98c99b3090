"""The audit behind the guarantees under faults (docs/CONTRACTS.md): reads the bucket, the catalog and the
state machine's executions and says, object by object and version by version, what holds and what not.

- every uploaded object is accepted (its key is the key of a catalog record, or one of its
  ``duplicate_keys``, and the object is still in place) or quarantined (a ``q#`` record, the copy under
  ``quarantine/`` and its reason, the original gone), never both, never neither (``lost``);
- one catalog record per dataset + sha256, no key claimed by two records, no image twice in a manifest
  version (``duplicate_records``);
- every manifest version is complete (its seven files), consistent (stats counts = CSV rows, every row
  a catalogued image) and, where the bucket keeps versions, was never rewritten; ``latest.json`` names
  the version of the most images;
- at most one execution per manifest version started by commits (``executions_per_version``; a manual
  re-run, ``medimage pipeline start``, is named apart and counted only in ``executions``);
- ``production.json`` names a version whose gate passed, whose files are all there and whose model file
  has the recorded sha256; every version of its history still has its model file.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from medimage.core import layout
from medimage.core.executions import commit_execution_name, may_belong_to
from medimage.core.manifests import read_csv
from medimage.core.presets import SPLITS

MANIFEST_FILES = (
    *(f"{split}.csv" for split in SPLITS),
    *(f"{split}.manifest" for split in SPLITS),
    "stats.json",
)
# What a promoted version's folder must hold besides its model file (docs/CONTRACTS.md, registry).
MODEL_FILES = ("model.json", "labels.txt", "evaluation.json", "gate.json")


@dataclass
class Audit:
    objects: int = 0
    accepted: int = 0
    quarantined: int = 0
    lost: list[str] = field(default_factory=list)  # in neither place or in both
    duplicate_records: int = 0
    manifest_versions: list[str] = field(default_factory=list)
    manifest_problems: list[str] = field(default_factory=list)
    executions: int = 0  # every execution of the dataset, manual re-runs included
    executions_per_version: dict[str, int] = field(default_factory=dict)  # those commits started
    production_version: str | None = None
    production_problems: list[str] = field(default_factory=list)

    @property
    def production_valid(self) -> bool:
        return not self.production_problems

    def problems(self) -> list[str]:
        """Every broken guarantee, one line each (empty: all hold)."""
        found = [f"lost: {key}" for key in self.lost]
        if self.duplicate_records:
            found.append(f"{self.duplicate_records} duplicate catalog or manifest records")
        found += self.manifest_problems
        found += [
            f"{n} executions for manifest version {v}"
            for v, n in self.executions_per_version.items()
            if n > 1
        ]
        return found + self.production_problems


class PipelineAuditor:
    """``PipelineAuditor(s3, dynamodb, bucket, table, sfn, state_machine_arn).audit(dataset, keys)``."""

    def __init__(
        self,
        s3: Any,
        dynamodb: Any,
        bucket: str,
        table: str,
        sfn: Any = None,
        state_machine_arn: str | None = None,
    ) -> None:
        self.s3 = s3
        self.dynamodb = dynamodb
        self.bucket = bucket
        self.table = table
        self.sfn = sfn
        self.state_machine_arn = state_machine_arn

    # ------------------------------------------------------------------ reading
    def _keys(self, prefix: str) -> set[str]:
        keys: set[str] = set()
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            keys.update(item["Key"] for item in page.get("Contents", []))
        return keys

    def _get(self, key: str) -> bytes | None:
        try:
            return self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except self.s3.exceptions.NoSuchKey:
            return None

    def _json(self, key: str) -> Any:
        data = self._get(key)
        return None if data is None else json.loads(data)

    def _catalog(self, dataset: str) -> tuple[list[dict[str, Any]], dict[str, set[str]], set[str]]:
        """(image records, duplicate keys by sha256, quarantined keys)."""
        records: list[dict[str, Any]] = []
        duplicates: dict[str, set[str]] = {}
        quarantined: set[str] = set()
        pages = self.dynamodb.get_paginator("query").paginate(
            TableName=self.table,
            KeyConditionExpression="dataset = :d",
            ExpressionAttributeValues={":d": {"S": dataset}},
        )
        for page in pages:
            for item in page.get("Items", []):
                kind = item["item"]["S"]
                if kind.startswith("img#"):
                    record = json.loads(item["record"]["S"])
                    records.append(record)
                    duplicates[record["sha256"]] = set(item.get("duplicate_keys", {}).get("SS", ()))
                elif kind.startswith("q#"):
                    quarantined.add(kind[2:])
        return records, duplicates, quarantined

    # ------------------------------------------------------------------ the audit
    def audit(self, dataset: str, uploaded: set[str] | list[str]) -> Audit:
        result = Audit(objects=len(set(uploaded)))
        records, duplicates, q_records = self._catalog(dataset)
        self._objects(dataset, set(uploaded), records, duplicates, q_records, result)
        self._manifests(dataset, records, result)
        self._executions(dataset, result)
        result.production_version, result.production_problems = self.production(dataset)
        return result

    def _objects(
        self,
        dataset: str,
        uploaded: set[str],
        records: list[dict[str, Any]],
        duplicates: dict[str, set[str]],
        q_records: set[str],
        result: Audit,
    ) -> None:
        claims = Counter(r["key"] for r in records)
        for keys in duplicates.values():
            claims.update(keys)
        shas = Counter(r["sha256"] for r in records)
        result.duplicate_records += sum(n - 1 for n in shas.values() if n > 1)
        result.duplicate_records += sum(n - 1 for n in claims.values() if n > 1)
        incoming = self._keys(f"{layout.LABELED_PREFIX}{dataset}/")
        in_quarantine = self._keys(f"{layout.QUARANTINE_PREFIX}{dataset}/")
        for key in sorted(uploaded):
            accepted = claims[key] > 0 and key in incoming
            quarantined = (
                key in q_records
                and layout.quarantine_key(dataset, key) in in_quarantine
                and layout.quarantine_reason_key(dataset, key) in in_quarantine
                and key not in incoming
            )
            if accepted == quarantined:
                result.lost.append(key)
            elif accepted:
                result.accepted += 1
            else:
                result.quarantined += 1

    def _manifests(self, dataset: str, records: list[dict[str, Any]], result: Audit) -> None:
        catalogued = {(r["key"], r["sha256"]) for r in records}
        prefix = f"{layout.MANIFESTS_PREFIX}{dataset}/"
        keys = self._keys(prefix)
        versions = sorted({k[len(prefix) :].split("/", 1)[0] for k in keys if k.count("/") >= 3})
        result.manifest_versions = versions
        images: dict[str, int] = {}
        for version in versions:
            folder = layout.manifest_prefix(dataset, version)
            missing = [name for name in MANIFEST_FILES if folder + name not in keys]
            if missing:
                result.manifest_problems.append(f"manifest {version} lacks {', '.join(missing)}")
                continue
            stats = self._json(folder + "stats.json")
            images[version] = int(stats.get("images", 0))
            rows = {split: read_csv((self._get(f"{folder}{split}.csv") or b"").decode()) for split in SPLITS}
            seen = Counter(row["sha256"] for split_rows in rows.values() for row in split_rows)
            result.duplicate_records += sum(n - 1 for n in seen.values() if n > 1)
            for split, split_rows in rows.items():
                if stats["totals"].get(split) != len(split_rows):
                    result.manifest_problems.append(
                        f"manifest {version}: stats say {stats['totals'].get(split)} {split} images, "
                        f"{split}.csv has {len(split_rows)}"
                    )
                strays = [row["key"] for row in split_rows if (row["key"], row["sha256"]) not in catalogued]
                if strays:
                    result.manifest_problems.append(
                        f"manifest {version}: {len(strays)} rows not in the catalog"
                    )
            result.manifest_problems += self._rewritten(folder, version)
        # The catalog only grows: the newest version holds the most images (two versions of one second
        # are not ordered by their names).
        latest = self._json(layout.latest_manifest_key(dataset))
        named = None if latest is None else latest.get("version")
        if images and (named not in images or images[named] < max(images.values())):
            newest = max(images, key=lambda v: (images[v], v))
            result.manifest_problems.append(f"latest.json names {named}, the newest version is {newest}")

    def _rewritten(self, folder: str, version: str) -> list[str]:
        """Files of a manifest version stored more than once (only seen where the bucket keeps versions)."""
        counts: Counter[str] = Counter()
        pages = self.s3.get_paginator("list_object_versions").paginate(Bucket=self.bucket, Prefix=folder)
        for page in pages:
            counts.update(v["Key"] for v in page.get("Versions", []))
        return [
            f"manifest {version}: {key.rsplit('/', 1)[1]} was written {n} times"
            for key, n in counts.items()
            if n > 1
        ]

    def _executions(self, dataset: str, result: Audit) -> None:
        if self.sfn is None or self.state_machine_arn is None:
            return
        per_version: Counter[str] = Counter()
        pages = self.sfn.get_paginator("list_executions").paginate(stateMachineArn=self.state_machine_arn)
        for page in pages:
            for execution in page.get("executions", []):
                if not may_belong_to(execution["name"], dataset):
                    continue
                described = self.sfn.describe_execution(executionArn=execution["executionArn"])
                payload = json.loads(described.get("input") or "{}")
                if payload.get("dataset") != dataset:
                    continue
                result.executions += 1
                version = str(payload.get("manifest_version"))
                if execution["name"] == commit_execution_name(dataset, version):
                    per_version[version] += 1  # a commit's; a manual re-run has a name of its own
        result.executions_per_version = dict(sorted(per_version.items()))

    def production(self, dataset: str) -> tuple[str | None, list[str]]:
        """The production version (None: nothing promoted yet) and what is wrong with it."""
        pointer = self._json(layout.production_pointer_key(dataset))
        if pointer is None:
            return None, []
        version = str(pointer.get("version"))
        folder = layout.model_prefix(dataset, version)
        problems: list[str] = []
        gate = self._json(folder + "gate.json")
        if not isinstance(gate, dict) or gate.get("passed") is not True:
            problems.append(f"production {version} has no passed gate decision")
        missing = [name for name in MODEL_FILES if self._get(folder + name) is None]
        if missing:
            problems.append(f"production {version} lacks {', '.join(missing)}")
        model = self._get(str(pointer.get("model_key")))
        if model is None or hashlib.sha256(model).hexdigest() != pointer.get("model_sha256"):
            problems.append(f"production {version}: {pointer.get('model_key')} is missing or changed")
        for entry in pointer.get("history") or []:
            if self._get(str(entry.get("model_key"))) is None:
                problems.append(f"history entry {entry.get('version')} lost its model file")
        return version, problems
