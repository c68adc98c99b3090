"""`medimage train`: train locally on a folder-per-label tree by running training/train.py as SageMaker would
(``--on local``), or launch it as a SageMaker training job on a manifest version (``--on sagemaker``)."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

from medimage.cli.common import add_stack_arguments, add_tree_arguments, apply_endpoint_arguments
from medimage.core.errors import MedimageError
from medimage.core.presets import get_preset
from medimage.training.contract import TrainConfig
from medimage.training.options import add_field_options, option_name

# TrainConfig fields that are options of `medimage train` itself (any other: -H NAME=VALUE).
CONFIG_OPTIONS = ("epochs", "image_size")
PROGRESS_PREFIXES = (
    "data:",
    "starting weights:",
    "model:",
    "epoch ",
    "time budget:",
    "training stopped",
    "export:",
    "final:",
    "train.py: error",
    "ignoring hyperparameters",
)


NAME = "train"
HELP = "train a classifier: locally on a folder-per-label tree, or as a SageMaker job on a manifest version"
DESCRIPTION = (
    "--on local (the default): label and split a folder-per-label tree with a preset (patient-aware),\n"
    "lay it out as the SageMaker training channels and run training/train.py under the script-mode\n"
    "contract. --out receives model.tflite, model-int8.tflite, labels.txt, model.json, evaluation.json\n"
    "and output/ (plots, evaluation, train.log).\n\n"
    "--on sagemaker: launch training/train.py as a SageMaker training job with the SageMaker Python SDK\n"
    "on a manifest version in the stack's bucket (the newest unless --manifest-version), with the same\n"
    "channels, hyperparameters and output layout as the state machine's Train state. The training image\n"
    "is the SDK's TensorFlow container for the region and instance type (GPU on ml.p*/ml.g*). The bucket,\n"
    "role and source tarball come from the stack (--stack, samconfig.toml) or --stack-json of `medimage\n"
    "up`; the SDK runs in .venv-sagemaker (make sagemaker-install). It prints the job and where its\n"
    "model.tar.gz goes; --wait follows the job and streams its log.\n\n"
    "examples:\n  medimage train --data ../shared/data/chestxray2017-224-train \\\n"
    "      --preset chestxray2017-binary --out build/model --epochs 20\n"
    "  medimage train --on sagemaker --dataset chestxray2017 --wait\n"
    "  medimage train --on sagemaker --dataset oct2017 --instance-type ml.g5.xlarge \\\n"
    "      --manifest-version 20261125T190500Z-1a2b3c4d -H epochs=30 -H weights=imagenet"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--on",
        choices=("local", "sagemaker"),
        default="local",
        help="where to train: here (default) or as a SageMaker training job",
    )
    add_tree_arguments(parser, required=False)
    parser.add_argument("--out", type=Path, help="model directory to write (--on local)")
    # Unset (None): train.py's default, or the preset's.
    add_field_options(parser, TrainConfig, only=CONFIG_OPTIONS, defaults=dict.fromkeys(CONFIG_OPTIONS))
    parser.add_argument(
        "--dataset",
        help="dataset name; --on local: default the preset name, it seeds the split; "
        "--on sagemaker: the dataset whose manifest version to train on (required)",
    )
    parser.add_argument(
        "--hyperparameter",
        "-H",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="any other train.py hyperparameter, e.g. -H batch-size=64 (repeatable)",
    )
    parser.add_argument("--quiet", action="store_true", help="do not relay the training progress")
    cloud = parser.add_argument_group("--on sagemaker")
    cloud.add_argument("--manifest-version", help="manifest version to train on (default: the newest)")
    cloud.add_argument(
        "--instance-type", help="training instance type (default: the template's ml.m5.xlarge)"
    )
    cloud.add_argument("--wait", action="store_true", help="follow the job to its end, streaming its log")
    cloud.add_argument(
        "--channels",
        choices=("auto", "files", "shards"),
        default="auto",
        help="what the job reads: a version's TFRecord shards (FastFile) when it has a shard plan and they "
        "are packed, else its files (auto); or files or shards",
    )
    cloud.add_argument("--bucket", help="data bucket (default: $MEDIMAGE_BUCKET or the stack output)")
    cloud.add_argument(
        "--role", help="role SageMaker assumes (default: the stack's SageMakerTrainingRoleArn output)"
    )
    cloud.add_argument(
        "--source", help="training source tarball s3 URI (default: the stack's TrainingSourceUri output)"
    )
    cloud.add_argument("--json", action="store_true", help="print the job (and the request sent) as JSON")
    add_stack_arguments(parser)


def config_overrides(args: argparse.Namespace) -> dict[str, str]:
    """The ``CONFIG_OPTIONS`` given, as train.py hyperparameters (``{"image-size": "224"}``)."""
    values = {name: getattr(args, name) for name in CONFIG_OPTIONS}
    return {option_name(name)[2:]: str(value) for name, value in values.items() if value is not None}


def run(args: argparse.Namespace) -> int:
    if args.on == "sagemaker":
        return run_sagemaker(args)
    missing = [
        flag
        for flag, value in (("--data", args.data), ("--preset", args.preset), ("--out", args.out))
        if not value
    ]
    if missing:
        raise ValueError(f"training here (--on local) needs {', '.join(missing)}; see medimage train --help")
    return run_local(args)


def run_local(args: argparse.Namespace) -> int:
    from medimage.training.runner import run_train_script, scan_tree, write_channels

    preset = get_preset(args.preset)
    scan = scan_tree(args.data, preset, args.dataset)
    if scan.skipped:
        print(
            f"skipped {len(scan.skipped)} file(s) no label rule accepts, e.g. {scan.skipped[0][0]}: "
            f"{scan.skipped[0][1]}",
            file=sys.stderr,
        )
    hyperparameters: dict[str, str] = {
        "preset": preset.name,
        "dataset": args.dataset or preset.name,
        "manifest-version": "local",
    }
    hyperparameters.update(config_overrides(args))
    for item in args.hyperparameter:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ValueError(f"--hyperparameter expects NAME=VALUE, got '{item}'")
        hyperparameters[name.lstrip("-")] = value
    out = Path(args.out)
    output_dir = out / "output"

    def relay(line: str) -> None:
        if not args.quiet and line.startswith(PROGRESS_PREFIXES):
            print(line, flush=True)

    work = Path(tempfile.mkdtemp(prefix="medimage-train-"))
    try:
        channels = write_channels(scan, work)
        counts = {name: len(scan.split(name)) for name in ("train", "val", "test")}
        print(
            f"training on {len(scan.images)} images {counts} from {args.data} (preset {preset.name})",
            flush=True,
        )
        result = run_train_script(
            channels, hyperparameters, out, output_dir, on_line=relay, log_path=output_dir / "train.log"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if not result.ok:
        raise MedimageError(f"training failed: {result.failure_reason} (log: {output_dir / 'train.log'})")
    evaluation = json.loads((out / "evaluation.json").read_text(encoding="utf-8"))
    print(
        f"done in {result.seconds:.0f}s: val accuracy {evaluation['val']['accuracy']}, "
        f"test accuracy {evaluation['test']['accuracy']}, test macro AUC {evaluation['test']['macro_auc']}"
    )
    print(f"model: {out / 'model.tflite'} ({(out / 'model.tflite').stat().st_size} bytes)")
    return 0


def run_sagemaker(args: argparse.Namespace) -> int:
    """The job, or one line with the error's stable code (``no_manifest``, ``sdk_missing``, ...)."""
    try:
        return launch_on_sagemaker(args)
    except MedimageError as exc:
        print(f"medimage train: error [{exc.code}]: {exc}", file=sys.stderr)
        return 2


def launch_on_sagemaker(args: argparse.Namespace) -> int:
    from medimage.ops import sagemaker_training as sm

    given = [flag for flag, value in (("--data", args.data), ("--out", args.out)) if value]
    if given:
        raise ValueError(
            f"{' and '.join(given)} are for --on local: a SageMaker job trains on a manifest version in "
            f"the stack's bucket (--dataset, --manifest-version)"
        )
    if not args.dataset:
        raise ValueError("--on sagemaker needs --dataset (the dataset whose manifest version to train on)")
    apply_endpoint_arguments(args)
    overrides = config_overrides(args)
    overrides.update(sm.parse_hyperparameters(args.hyperparameter))
    python = sm.sdk_python()
    plan = sm.plan_job(
        dataset=args.dataset,
        manifest_version=args.manifest_version,
        preset=args.preset,
        instance_type=args.instance_type,
        overrides=overrides,
        wait=args.wait,
        bucket=args.bucket,
        role_arn=args.role,
        source_uri=args.source,
        stack=args.stack,
        config_env=args.config_env,
        channels=args.channels,
    )
    stream = sys.stderr if args.json else sys.stdout

    def say(line: str) -> None:
        print(line, file=stream, flush=True)

    manifest = plan.manifest
    say(
        f"SageMaker training job: dataset {manifest.dataset}, manifest {manifest.version} "
        f"(preset {manifest.preset}), {plan.instance_type}, s3://{plan.stack.bucket}/{manifest.prefix}, "
        f"from its {f'{len(manifest.shards)} shards' if plan.shards else 'files'}"
    )
    result = sm.launch(plan, (lambda line: None) if args.quiet else say, python)
    if args.json:
        print(
            json.dumps(
                {
                    "dataset": manifest.dataset,
                    "manifest_version": manifest.version,
                    "input": "shards" if plan.shards else "files",
                    **result.to_dict(),
                },
                indent=2,
            )
        )
        return 0
    print(f"job {result.job_name}: {result.status}")
    print(f"  image: {result.image}")
    if result.status == "Completed":
        print(f"model: {result.model_artifacts}")
    else:
        print(f"model (when the job completes): {result.model_artifacts}")
        print(f"  follow it: aws sagemaker describe-training-job --training-job-name {result.job_name}")
    return 0
