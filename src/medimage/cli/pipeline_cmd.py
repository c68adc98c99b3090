"""`medimage pipeline start|status|list`: the deployed training state machine, per dataset."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import TYPE_CHECKING

from medimage.cli.common import add_stack_arguments, apply_endpoint_arguments

if TYPE_CHECKING:
    from medimage.ops.executions import ExecutionView

EXAMPLES = """\
examples:
  medimage pipeline start --dataset chestxray2017                  # train on the latest manifest again
  medimage pipeline start --dataset oct2017 -H epochs=30 -H weights=imagenet --follow
  medimage pipeline status --dataset chestxray2017                 # the latest execution
  medimage pipeline status --execution arn:aws:states:...:execution:...:NAME --json
  medimage pipeline list --dataset chestxray2017 --limit 5

The state machine: --state-machine, else $MEDIMAGE_STATE_MACHINE_ARN, else the TrainingStateMachineArn
output of the stack; the bucket (for start's manifest and status's gate.json): --bucket, else
$MEDIMAGE_BUCKET, else the stack's DataBucketName. A commit (`medimage ingest --commit`) starts an
execution by itself; `start` is for training again, for example with other hyperparameters. A local
stack (`medimage up`): --stack-json up-output/stack.json.
"""


NAME = "pipeline"
HELP = "start, follow and list training executions of a deployed stack"
DESCRIPTION = "Start and follow executions of the deployed training state machine.\n\n" + EXAMPLES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    def common(name: str, help_: str) -> argparse.ArgumentParser:
        p = actions.add_parser(
            name,
            help=help_,
            description=help_ + ".\n\n" + EXAMPLES,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        p.add_argument("--dataset", required=name != "status", help="dataset name (e.g. chestxray2017)")
        p.add_argument("--state-machine", help="training state machine ARN (default: the stack output)")
        p.add_argument("--bucket", help="data bucket (default: $MEDIMAGE_BUCKET or the stack output)")
        add_stack_arguments(p)
        p.add_argument("--json", action="store_true", help="print JSON")
        return p

    start = common("start", "start a training execution on the dataset's latest manifest")
    start.add_argument("--preset", help="preset (default: the one in the manifest's stats.json)")
    start.add_argument(
        "-H",
        "--hyperparameter",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a training hyperparameter (repeatable): epochs, batch-size, ...",
    )
    start.add_argument("--follow", action="store_true", help="then follow it until it ends")
    start.set_defaults(func=run_start)

    status = common("status", "show an execution: state, current step, model version, gate decision")
    status.add_argument("--execution", help="execution ARN (default: the dataset's latest)")
    status.add_argument("--follow", action="store_true", help="poll until the execution ends")
    status.add_argument("--interval", type=float, default=15.0, help="seconds between polls (--follow)")
    status.set_defaults(func=run_status)

    listing = common("list", "list the dataset's recent executions, newest first")
    listing.add_argument("--limit", type=int, default=10, help="how many (default 10)")
    listing.set_defaults(func=run_list)


def _state_machine(args: argparse.Namespace) -> str:
    from medimage.ops.stack import STATE_MACHINE_ENV, resolve_output

    return resolve_output(
        args.state_machine, STATE_MACHINE_ENV, "TrainingStateMachineArn", args.stack, args.config_env
    )


def _bucket(args: argparse.Namespace) -> str:
    from medimage.ops.stack import BUCKET_ENV, resolve_output

    return resolve_output(args.bucket, BUCKET_ENV, "DataBucketName", args.stack, args.config_env)


def _hyperparameters(pairs: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"--hyperparameter {pair!r}: expected NAME=VALUE")
        out[name.strip()] = value.strip()
    return out


def run_start(args: argparse.Namespace) -> int:
    from medimage.ops import executions as pipeline
    from medimage.ops.stack import aws_errors, client

    apply_endpoint_arguments(args)
    hyperparameters = _hyperparameters(args.hyperparameter)
    arn = _state_machine(args)
    bucket = _bucket(args)
    with aws_errors():
        payload = pipeline.execution_input(client("s3"), bucket, args.dataset, args.preset, hyperparameters)
        execution_arn = pipeline.start(client("stepfunctions"), arn, payload)
    if args.json and not args.follow:
        print(json.dumps({"execution_arn": execution_arn, "input": payload}, indent=2))
    else:
        print(f"started {execution_arn}")
        print(f"  input: {json.dumps(payload)}")
    if args.follow:
        return _follow(execution_arn, args.json, interval=15.0)
    return 0


def run_status(args: argparse.Namespace) -> int:
    from medimage.ops import executions as pipeline
    from medimage.ops.stack import aws_errors, client

    apply_endpoint_arguments(args)
    if not args.execution and not args.dataset:
        raise ValueError("give --dataset (its latest execution) or --execution ARN")
    with aws_errors():
        execution_arn = args.execution or pipeline.latest_execution_arn(
            client("stepfunctions"), _state_machine(args), args.dataset
        )
    if args.follow:
        return _follow(execution_arn, args.json, args.interval)
    with aws_errors():
        view = pipeline.status(client("stepfunctions"), client("s3"), execution_arn)
    _show(view, args.json)
    return 0


def run_list(args: argparse.Namespace) -> int:
    from medimage.ops import executions as pipeline
    from medimage.ops.stack import aws_errors, client

    apply_endpoint_arguments(args)
    arn = _state_machine(args)
    with aws_errors():
        views = pipeline.list_executions(client("stepfunctions"), arn, args.dataset, limit=args.limit)
    if args.json:
        print(json.dumps([v.to_dict() for v in views], indent=2))
        return 0
    if not views:
        print(f"no executions for dataset {args.dataset!r}")
        return 0
    for v in views:
        started = f"{v.started:%Y-%m-%d %H:%M:%S}" if v.started else "-"
        print(f"{started}  {v.status:10} {v.input.get('manifest_version') or '-':28} {v.name}")
    return 0


def _show(view: ExecutionView, as_json: bool) -> None:
    from medimage.ops.executions import describe_lines

    if as_json:
        print(json.dumps(view.to_dict(), indent=2))
    else:
        print("\n".join(describe_lines(view)))


def _follow(execution_arn: str, as_json: bool, interval: float) -> int:
    """Poll until the execution ends, printing each new step; exit 1 when it did not succeed."""
    from medimage.ops import executions as pipeline
    from medimage.ops.stack import aws_errors, client

    last_step = None
    sfn, s3 = client("stepfunctions"), client("s3")
    while True:
        with aws_errors():
            view = pipeline.status(sfn, s3, execution_arn)
        if view.status != "RUNNING":
            _show(view, as_json)
            return 0 if view.status == "SUCCEEDED" else 1
        if view.current_step != last_step:
            last_step = view.current_step
            print(f"{time.strftime('%H:%M:%S')} {view.name}: {view.current_step}", file=sys.stderr)
        time.sleep(max(interval, 1.0))
