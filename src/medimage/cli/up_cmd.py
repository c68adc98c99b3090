"""`medimage up`: the whole pipeline as a running local service that the AWS CLI and boto3 talk to."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

NAME = "up"
HELP = "run the whole pipeline as a local AWS endpoint (S3, SQS, Step Functions) and API, until Ctrl-C"
DESCRIPTION = """\
Run the pipeline of template.yaml as a local service, in the foreground until Ctrl-C or SIGTERM.

An AWS endpoint (moto in server mode) on --host:--port holds the bucket, queues, catalog table,
EventBridge rule and training state machine that template.yaml declares; S3 uploads reach the real
functions as deployed (S3 -> SQS -> annotate / inference, _commit -> EventBridge -> split -> Step
Functions: training with the real train.py, gate, promote). The API (POST /predict, STOW-RS POST /studies,
GET /health, GET /) is on --api-port. When it is ready, <workdir>/stack.json names the endpoint, bucket,
table, state machine, API and queues, and the lines to paste into a shell are printed.

State lives in memory only: stopping `up` forgets everything, a restart starts empty.

examples:
  medimage up --epochs 5
  export AWS_ENDPOINT_URL=http://127.0.0.1:4566 AWS_DEFAULT_REGION=us-east-1 \\
         AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing
  aws s3 cp --recursive ChestXRay2017/train s3://<bucket>/incoming/labeled/chestxray2017/
  medimage ingest ChestXRay2017/train --dataset chestxray2017 --stack-json up-output/stack.json --commit
  medimage pipeline status --dataset chestxray2017 --stack-json up-output/stack.json --follow
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--workdir", type=Path, default=Path("up-output"), help="stack.json, logs (default up-output)"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address of both servers (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=4566, help="AWS endpoint port (default 4566)")
    parser.add_argument("--api-port", type=int, default=8080, help="inference API port (default 8080)")
    parser.add_argument(
        "--epochs", type=int, help="training epochs of each execution (TrainingEpochs; default: the preset's)"
    )
    parser.add_argument(
        "--min-accuracy", type=float, help="gate threshold for every dataset (MinAccuracyOverride)"
    )
    parser.add_argument(
        "--template", type=Path, help="the SAM template (default: the checkout's template.yaml)"
    )
    parser.add_argument(
        "--parameter",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a template parameter (repeatable), e.g. MinNewImages=50 (default here: MinNewImages=1)",
    )


def _parameters(pairs: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"--parameter {pair!r}: expected NAME=VALUE")
        out[name.strip()] = value.strip()
    return out


def ready_lines(stack: dict[str, Any], dataset: str, stack_json: Path, seconds: float) -> list[str]:
    bucket, api = stack["bucket"], stack["api_url"].rstrip("/")
    return [
        f"medimage up: ready in {seconds:.1f} s; state is in memory (a restart starts empty). Ctrl-C stops.",
        f"  stack:   {stack_json}",
        f"  bucket:  {bucket}",
        "paste into a shell:",
        f"  export AWS_ENDPOINT_URL={stack['endpoint_url']} AWS_DEFAULT_REGION={stack['region']} "
        "AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing",
        f"  aws s3 cp --recursive ChestXRay2017/train s3://{bucket}/incoming/labeled/{dataset}/",
        f"  aws s3api put-object --bucket {bucket} --key incoming/labeled/{dataset}/_commit",
        f"  aws s3 cp scan.jpeg s3://{bucket}/incoming/unlabeled/{dataset}/",
        f"  curl -s -X POST -H 'Content-Type: image/jpeg' --data-binary @scan.jpeg "
        f"'{api}/predict?dataset={dataset}'",
    ]


def _log_to(stream: Any) -> None:
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S"))
    logger = logging.getLogger("medimage.local")
    logger.handlers = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False


def run(args: argparse.Namespace) -> int:
    from medimage.local.server import UpOptions, serving

    opts = UpOptions(
        workdir=args.workdir,
        host=args.host,
        port=args.port,
        api_port=args.api_port,
        epochs=args.epochs,
        min_accuracy=args.min_accuracy,
        template=args.template,
        parameters=_parameters(args.parameter),
    )
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        print(f"medimage up: {signal.Signals(signum).name}, stopping", file=terminal, flush=True)
        stop.set()

    terminal = sys.stdout
    _log_to(terminal)
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    started = time.perf_counter()
    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    lambda_log = workdir / "lambda.log"
    try:
        # The functions' own output (structured logs) goes where CloudWatch would keep it.
        with (
            lambda_log.open("a", encoding="utf-8", buffering=1) as log_file,
            redirect_stdout(log_file),
            redirect_stderr(log_file),
            serving(opts, stop) as running,
        ):
            stack = running.stack()
            stack_json = workdir / "stack.json"
            partial = stack_json.with_suffix(".json.partial")
            partial.write_text(json.dumps(stack, indent=2) + "\n", encoding="utf-8")
            partial.replace(stack_json)
            lines = ready_lines(stack, opts.default_dataset, stack_json, time.perf_counter() - started)
            print("\n".join([*lines, f"  function logs: {lambda_log}"]), file=terminal, flush=True)
            while not stop.wait(0.5):
                pass
            (workdir / "stack.json").unlink(missing_ok=True)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print("medimage up: stopped", file=terminal, flush=True)
    return 0
