"""`medimage deploy`: `sam build` + `sam deploy` with samconfig.toml, then upload the training source and
the pretrained weights."""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

EXAMPLES = """\
examples:
  make sam-install                              # once: the SAM CLI in its own virtual environment
  medimage deploy                               # samconfig.toml's default environment (stack "medimage")
  medimage deploy --config-env dev              # or prod (which asks to confirm the change set)
  medimage deploy --config-env dev --guided     # answer SAM's questions, saved back to samconfig.toml
  medimage deploy --config-env dev --source-only  # only re-upload training/ + src/medimage and the weights
  medimage deploy --pretrained-dir ../shared/data/pretrained   # default: $MEDIMAGE_PRETRAINED_DIR
  medimage deploy --config-env prod --no-build --no-pretrained -- --role-arn ARN --no-confirm-changeset
                                                # CI: the last build, the weights left as they are, and
                                                # what follows `--` handed to `sam deploy`

After the stack is up it packs training/ and src/medimage as sourcedir.tar.gz and uploads it to the
stack's TrainingSourceUri (s3://<DataBucketName>/<TrainingSourceKey>), which the training state machine
hands SageMaker as sagemaker_submit_directory. Then it checks the MobileNetV2 ImageNet weights in the
pretrained folder against its SHA256SUMS and uploads them with their licence and labels to
s3://<DataBucketName>/pretrained/mobilenet_v2/, every training job's `pretrained` channel (files already
there with the same SHA-256 are skipped). Needs Docker for the inference image (sam build) and the AWS
permissions listed in the README ("Deploying to AWS").
"""


NAME = "deploy"
HELP = "deploy the stack with SAM (samconfig.toml) and upload the training source and weights"
DESCRIPTION = (
    "Run `sam build` and `sam deploy --config-env ENV` from the checkout, then upload the "
    "training source tarball and the pretrained weights.\n\n" + EXAMPLES
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config-env", default="default", help="samconfig.toml environment: default, dev, prod"
    )
    parser.add_argument("--guided", action="store_true", help="run `sam deploy --guided`")
    parser.add_argument("--no-build", action="store_true", help="skip `sam build` (use the last build)")
    parser.add_argument(
        "--source-only",
        action="store_true",
        help="no SAM: only upload the training source and the pretrained weights to the deployed stack",
    )
    parser.add_argument(
        "--pretrained-dir",
        help="the MobileNetV2 ImageNet weights with their SHA256SUMS (default: $MEDIMAGE_PRETRAINED_DIR)",
    )
    parser.add_argument("--stack", help="stack name (default: stack_name of --config-env in samconfig.toml)")
    parser.add_argument(
        "--no-pretrained",
        action="store_true",
        help="leave the bucket's pretrained weights as they are (a runner without the weights folder)",
    )
    parser.add_argument(
        "sam_deploy_args",
        nargs="*",
        metavar="-- SAM_DEPLOY_ARG",
        help="arguments after `--` go to `sam deploy` as they are (--role-arn ARN --no-confirm-changeset)",
    )


def run(args: argparse.Namespace) -> int:
    from medimage.ops import deploy
    from medimage.ops.stack import aws_errors, checkout_root, client, stack_name, stack_outputs

    root = checkout_root()
    if root is None:
        raise deploy.DeployProblem(
            "run `medimage deploy` in the medimage checkout (template.yaml, samconfig.toml)"
        )
    weights = None if args.no_pretrained else deploy.pretrained_dir(args.pretrained_dir, os.environ)
    if weights is not None:
        deploy.verified_pretrained(weights)  # a bad folder stops the deploy before SAM runs
    if not args.source_only:
        sam = deploy.sam_executable(root)
        commands = deploy.sam_commands(
            sam, args.config_env, args.guided, build=not args.no_build, deploy_args=args.sam_deploy_args
        )
        deploy.run_sam(root, commands)
    name = stack_name(args.stack, args.config_env, root)  # read after --guided, which may have saved one
    with aws_errors():
        where = deploy.source_location(stack_outputs(name), root)
        with tempfile.TemporaryDirectory(prefix="medimage-source-") as tmp:
            tarball = deploy.pack_training_source(root, Path(tmp) / "sourcedir.tar.gz")
            size, digest = tarball.stat().st_size, deploy.sha256_of(tarball)
            deploy.upload_training_source(client("s3"), tarball, where)
        staged = None if weights is None else deploy.upload_pretrained(client("s3"), where.bucket, weights)
    print(f"training source: {where.uri} ({size / 1024:.0f} KiB, sha256 {digest[:12]})")
    if staged is None:
        print(f"pretrained weights: s3://{where.bucket}/{deploy.MOBILENET_V2_PREFIX} left as they are")
    else:
        uploaded = sum(f.uploaded for f in staged)
        print(
            f"pretrained weights: s3://{where.bucket}/{deploy.MOBILENET_V2_PREFIX} "
            f"({uploaded} uploaded, {len(staged) - uploaded} already there)"
        )
    print(
        f"stack {name} is ready: `medimage ingest DIR --dataset NAME --stack {name} --commit` "
        "uploads images and starts training"
    )
    return 0
