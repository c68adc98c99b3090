"""`medimage ingest s3://bucket/prefix`: start the stack's bulk-import state machine and wait for it.

The copies run server-side (statemachine/bulk_import.asl.json: a Distributed Map whose batches the
bulk-copy function copies); this side checks what it can first with the caller's credentials (the source
can be listed, and holds a folder-per-label tree), starts one execution and reads its summary.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from medimage.core import layout
from medimage.core.errors import BadS3Uri, BulkImportProblem, RejectedInput
from medimage.core.objects import parse_s3_uri
from medimage.services.bulk_import import ImportRequest, destination_of

OUTPUT_KEY = "BulkImportStateMachineArn"
# The codes the state machine's Check step fails with (its Fail state's Error), and its own failure.
CHECK_CODES = frozenset({"unknown_dataset", "source_not_allowed", "bad_import_input"})
TOO_MANY_FAILURES = "BulkImportFailures"
PREFLIGHT_KEYS = 1000  # the first page of the source listing


@dataclass(frozen=True)
class Source:
    bucket: str
    prefix: str

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


@dataclass
class BulkImportResult:
    source: str
    execution_arn: str
    status: str
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "SUCCEEDED"


def parse_source(uri: str) -> Source:
    """``s3://bucket[/prefix]`` -> the bucket and the prefix of the tree's root (ending in ``/``)."""
    try:
        bucket, prefix = parse_s3_uri(uri, key_required=False)
    except BadS3Uri as exc:
        raise BulkImportProblem(exc.message, "bad_import_input") from None
    return Source(bucket, prefix if not prefix or prefix.endswith("/") else prefix + "/")


def preflight(s3: Any, source: Source, dataset: str) -> int:
    """The number of keys of the listing's first page that map to a label folder: raises
    ``source_unreadable`` when the source cannot be listed, ``not_label_tree`` when none maps."""
    try:
        layout.check_dataset_name(dataset)
    except RejectedInput as exc:
        raise BulkImportProblem(exc.message, "bad_import_input") from None
    try:
        page = s3.list_objects_v2(Bucket=source.bucket, Prefix=source.prefix, MaxKeys=PREFLIGHT_KEYS)
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        raise BulkImportProblem(
            f"cannot list {source.uri} ({code or 'error'}): check the bucket's name and its policy "
            "(README: bulk import from another account)",
            "source_unreadable",
        ) from None
    keys = [str(obj["Key"]) for obj in page.get("Contents", [])]
    probe = ImportRequest(
        dataset=dataset, source_bucket=source.bucket, source_prefix=source.prefix, import_id="-"
    )
    mapped = sum(1 for key in keys if destination_of(probe, key)[0] is not None)
    if not mapped:
        found = "it is empty" if not keys else f"none of its first {len(keys)} keys is <label>/<image file>"
        raise BulkImportProblem(
            f"{source.uri} is not a folder-per-label tree ({found}); expected {source.uri}<label>/<file>",
            "not_label_tree",
        )
    return mapped


def execution_name(dataset: str) -> str:
    """Unique, readable, within Step Functions' 80 characters of [A-Za-z0-9_-]."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    return f"{re.sub(r'[^A-Za-z0-9_-]', '-', dataset)[:40]}-{stamp}-{uuid.uuid4().hex[:8]}"


def start(sfn: Any, state_machine_arn: str, source: Source, dataset: str, commit: bool) -> str:
    payload = {
        "dataset": dataset,
        "source_bucket": source.bucket,
        "source_prefix": source.prefix,
        "commit": commit,
    }
    started = sfn.start_execution(
        stateMachineArn=state_machine_arn, name=execution_name(dataset), input=json.dumps(payload)
    )
    return str(started["executionArn"])


def wait(
    sfn: Any,
    execution_arn: str,
    poll_s: float = 2.0,
    timeout_s: float | None = None,
    progress: Callable[[float], None] | None = None,
) -> dict[str, Any]:
    """DescribeExecution until the execution ends (``progress`` gets the seconds waited)."""
    began = time.monotonic()
    while True:
        described = sfn.describe_execution(executionArn=execution_arn)
        if described["status"] != "RUNNING":
            return dict(described)
        waited = time.monotonic() - began
        if timeout_s is not None and waited > timeout_s:
            raise BulkImportProblem(
                f"still running after {timeout_s:.0f} s: {execution_arn}", "import_failed"
            )
        if progress:
            progress(waited)
        time.sleep(poll_s)


def outcome(
    s3: Any, bucket: str, dataset: str, source: Source, described: dict[str, Any]
) -> BulkImportResult:
    """The import's result: its summary (the execution's output, else ``summary.json``); a refused
    request or a failed execution raises with its code."""
    arn = str(described["executionArn"])
    status = str(described["status"])
    if status == "SUCCEEDED":
        return BulkImportResult(source.uri, arn, status, json.loads(described.get("output") or "{}"))
    error = str(described.get("error") or "")
    cause = str(described.get("cause") or "")
    if error in CHECK_CODES:
        raise BulkImportProblem(cause or error, error)
    if error == TOO_MANY_FAILURES:
        name = arn.rsplit(":", 1)[-1]
        key = layout.import_summary_key(dataset, name)
        try:
            summary = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        except ClientError:
            summary = {}
        return BulkImportResult(source.uri, arn, status, summary)
    raise BulkImportProblem(f"the bulk import ended {status}: {error} {cause[:300]}".strip(), "import_failed")


def summary_lines(result: BulkImportResult, bucket: str) -> Iterable[str]:
    s = result.summary
    yield (
        f"{result.source} -> s3://{bucket}/{layout.LABELED_PREFIX}{s.get('dataset', '')}/: "
        f"{s.get('copied', 0)} copied ({int(s.get('bytes_copied', 0)) / 1e6:.1f} MB), "
        f"{s.get('skipped', 0)} skipped (already there), {s.get('failed', 0)} failed, "
        f"{s.get('ignored', 0)} left out (not <label>/<image file>)"
    )
    if s.get("failed"):
        codes = ", ".join(f"{code} {n}" for code, n in (s.get("failure_codes") or {}).items())
        where = f"s3://{bucket}/{s.get('failures_key', '')}"
        yield f"failures ({codes}): {where}; run the same command again to retry them"
    if s.get("map_error"):
        yield (
            f"the copy step failed ({s['map_error']}): more batches failed outright than the stack "
            "tolerates; run the same command again"
        )
    if s.get("committed"):
        yield (
            f"committed: s3://{bucket}/{layout.commit_key(str(s.get('dataset', '')))} (the split Lambda "
            "writes a manifest and starts training: follow it with `medimage pipeline status`)"
        )
    elif s.get("commit_requested"):
        yield ("not committed: more objects failed than BulkImportToleratedFailurePercent allows")
    yield f"execution: {result.execution_arn}"
