"""`medimage ingest`: upload a folder-per-label tree to a deployed stack's bucket."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from medimage.cli.common import add_stack_arguments, apply_endpoint_arguments

EXAMPLES = """\
examples:
  medimage ingest ChestXRay2017/train --dataset chestxray2017 --commit
  medimage ingest OCT2017/train --dataset oct2017 --stack medimage-dev --workers 16
  MEDIMAGE_BUCKET=my-bucket medimage ingest scans/ --dataset folders-demo
  medimage ingest s3://site-archive/exports/xray/ --dataset chestxray2017 --commit

Each sub-folder of DIR is a label folder: DIR/NORMAL/x.jpeg goes to
incoming/labeled/<dataset>/NORMAL/x.jpeg; hidden files, OS litter (Thumbs.db, __MACOSX ...) and files
without an image suffix are left out, as `medimage train` leaves them out. Run it again after an
interruption: objects already there with the same size and checksum are skipped. --commit uploads
incoming/labeled/<dataset>/_commit last (only when every upload succeeded), which makes the stack write
a manifest version and start training.
The bucket: --bucket, else $MEDIMAGE_BUCKET, else the DataBucketName output of the stack (--stack, else
$MEDIMAGE_STACK, else stack_name of --config-env in samconfig.toml). A local stack (`medimage up`):
--stack-json up-output/stack.json, or --endpoint-url http://127.0.0.1:4566 with --bucket.

A source already in S3 (s3://bucket/prefix, a folder-per-label tree there) is copied server-side by the
stack's bulk-import state machine (--state-machine, else $MEDIMAGE_BULK_IMPORT_ARN, else the stack output
BulkImportStateMachineArn); the stack must be deployed with the bucket in BulkImportSourceBuckets. It
waits and prints the copied, skipped and failed counts; a rerun copies only what is missing.
"""


NAME = "ingest"
HELP = "upload a folder-per-label tree to a deployed stack (parallel, resumable)"
DESCRIPTION = "Upload labeled images to s3://<bucket>/incoming/labeled/<dataset>/.\n\n" + EXAMPLES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "dir",
        metavar="DIR",
        help="folder with one sub-folder per label, or s3://bucket/prefix of such a tree",
    )
    parser.add_argument("--dataset", required=True, help="dataset name in the bucket (e.g. chestxray2017)")
    parser.add_argument("--bucket", help="data bucket (default: $MEDIMAGE_BUCKET or the stack output)")
    add_stack_arguments(parser)
    parser.add_argument("--commit", action="store_true", help="upload _commit at the end: start a split")
    parser.add_argument("--workers", type=int, default=8, help="parallel uploads (default 8)")
    parser.add_argument(
        "--state-machine",
        help="bulk-import state machine ARN, for an s3:// source (default: the stack output)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="give up waiting for an s3:// import after this many seconds",
    )


def run(args: argparse.Namespace) -> int:
    from medimage.ops import ingest as ing
    from medimage.ops.stack import BUCKET_ENV, aws_errors, client, resolve_output

    if args.workers < 1:
        raise ValueError("--workers must be at least 1")
    apply_endpoint_arguments(args)
    if str(args.dir).startswith("s3://"):
        return run_bulk_import(args)
    root = Path(args.dir)
    plan = ing.plan_files(root, args.dataset)  # a missing folder fails before any AWS call
    files = plan[0]
    if not files:
        raise ing.IngestProblem(f"no image files under label folders of {root} (expected DIR/<label>/<file>)")
    bucket = resolve_output(args.bucket, BUCKET_ENV, "DataBucketName", args.stack, args.config_env)
    s3 = client("s3", max_pool_connections=max(10, args.workers))
    print(
        f"uploading {len(files)} files to s3://{bucket}/{ing.labeled_prefix(args.dataset)} "
        f"with {args.workers} workers",
        file=sys.stderr,
    )
    with aws_errors(), progress_display(len(files)) as progress:
        result = ing.ingest(
            root,
            args.dataset,
            bucket,
            s3,
            workers=args.workers,
            commit=args.commit,
            progress=progress,
            plan=plan,
        )
    for line in ing.summary_lines(result, args.commit):
        print(line)
    return 0 if result.ok else 1


def run_bulk_import(args: argparse.Namespace) -> int:
    """An s3:// source: the stack's bulk-import state machine copies it; a problem prints with its code."""
    from medimage.core.errors import BulkImportProblem

    try:
        return _bulk_import(args)
    except BulkImportProblem as exc:
        raise BulkImportProblem(f"{exc.code}: {exc.message}", exc.code) from None


def _bulk_import(args: argparse.Namespace) -> int:
    from medimage.ops import bulk_import as bulk
    from medimage.ops.stack import BUCKET_ENV, BULK_IMPORT_ENV, aws_errors, client, resolve_output

    source = bulk.parse_source(args.dir)
    s3 = client("s3")
    with aws_errors():
        mapped = bulk.preflight(s3, source, args.dataset)
    bucket = resolve_output(args.bucket, BUCKET_ENV, "DataBucketName", args.stack, args.config_env)
    machine = resolve_output(
        args.state_machine, BULK_IMPORT_ENV, bulk.OUTPUT_KEY, args.stack, args.config_env
    )
    sfn = client("stepfunctions")
    with aws_errors():
        arn = bulk.start(sfn, machine, source, args.dataset, args.commit)
        more = "+" if mapped >= bulk.PREFLIGHT_KEYS else ""
        print(f"importing {source.uri} ({mapped}{more} images found) server-side: {arn}", file=sys.stderr)

        def waiting(seconds: float) -> None:
            if int(seconds) % 30 < 2:
                print(f"ingest: bulk import running ({seconds:.0f} s)", file=sys.stderr)

        described = bulk.wait(sfn, arn, timeout_s=args.timeout, progress=waiting)
        result = bulk.outcome(s3, bucket, args.dataset, source, described)
    for line in bulk.summary_lines(result, bucket):
        print(line)
    return 0 if result.ok and not result.summary.get("failed") else 1


@contextmanager
def progress_display(total: int) -> Iterator[Callable[[int, int, str], None]]:
    """A rich progress bar on a terminal; elsewhere (CI logs, pipes) a plain line every few seconds."""
    if sys.stderr.isatty():
        try:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
        except ImportError:
            pass
        else:
            with Progress(
                TextColumn("ingest"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
            ) as bar:
                task = bar.add_task("ingest", total=total)
                yield lambda done, _total, _outcome: bar.update(task, completed=done)
            return
    last = [0.0]

    def plain(done: int, total_: int, _outcome: str) -> None:
        now = time.monotonic()
        if done == total_ or now - last[0] >= 5:
            last[0] = now
            print(f"ingest: {done}/{total_} files ({100 * done // max(total_, 1)}%)", file=sys.stderr)

    yield plain
