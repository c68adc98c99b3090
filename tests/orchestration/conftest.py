"""The orchestration harness: the real template, ASL file and handlers on moto, with tiny datasets."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest

from medimage.core.manifests import CSV_FIELDS
from medimage.core.presets import get_preset
from medimage.core.training_job import PRETRAINED_CHANNEL
from medimage.local.account import ACCOUNT, REGION
from medimage.local.environment import local_pretrained_dir, moto_config
from medimage.local.functions import LocalFunction, template_functions
from medimage.local.moto_patches import local_training_workflow
from medimage.local.sagemaker import LocalSageMaker, TrainingOutcome, run_train_py
from medimage.local.synthetic import generate
from medimage.local.template import Resolver, definition_from_template
from medimage.ops.deploy import upload_pretrained
from medimage.template_file import load_template
from medimage.training.pretrained import MOBILENET_V2_FILE
from tests.orchestration.workflow_helpers import ExecutionResult, create_state_machine, run_execution

os.environ.setdefault("MEDIMAGE_TF_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parents[2]
PRESET = "chestxray2017-binary"
# Tiny and quick (the compact CNN: these tests are about the workflow, not the network); a fixed seed
# makes two runs with the same inputs give the same model.
GOOD = {
    "backbone": "cnn",
    "epochs": "12",
    "image-size": "32",
    "batch-size": "4",
    "learning-rate": "0.001",
    "patience": "20",
    "seed": "1",
}
# A learning rate of 0 leaves the network as initialised: a deterministic, useless model.
BAD = {**GOOD, "epochs": "1", "learning-rate": "0"}


def write_dataset(
    s3: Any, bucket: str, dataset: str, version: str, per_class: int = 20, size: int = 32, seed: int = 7
) -> dict[str, str]:
    """Synthetic labeled uploads plus a manifest version (CSV + ManifestFile per split); every split has
    every class (round robin), so recall is defined for each. Returns the execution input."""
    preset = get_preset(PRESET)
    files = generate(preset, per_class=per_class, size=size, seed=seed)
    rows: dict[str, list[tuple[str, str, str, str]]] = {"train": [], "val": [], "test": []}
    for i, f in enumerate(files):
        key = f"incoming/labeled/{dataset}/{f.folder}/{f.filename}"
        s3.put_object(Bucket=bucket, Key=key, Body=f.data)
        split = ("train", "train", "train", "val", "test")[i % 5]
        rows[split].append((key, f.label, hashlib.sha256(f.data).hexdigest(), ""))
    prefix = f"manifests/{dataset}/{version}/"
    for split, split_rows in rows.items():
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(CSV_FIELDS)
        writer.writerows(split_rows)
        s3.put_object(Bucket=bucket, Key=f"{prefix}{split}.csv", Body=out.getvalue().encode())
        manifest = [{"prefix": f"s3://{bucket}/"}, f"{prefix}{split}.csv", *(r[0] for r in split_rows)]
        s3.put_object(Bucket=bucket, Key=f"{prefix}{split}.manifest", Body=json.dumps(manifest).encode())
    return {
        "dataset": dataset,
        "preset": PRESET,
        "manifest_version": version,
        "bucket": bucket,
        "manifest_prefix": prefix,
    }


@dataclass
class MemoTrainer:
    """The real trainer, run once per distinct (channels, hyperparameters): seeded training is
    deterministic, so a second identical job reuses the first one's model directory."""

    cache_dir: Path
    runs: int = 0
    cache: dict[str, tuple[Path, Path, TrainingOutcome]] = field(default_factory=dict)

    def __call__(
        self, channels: dict[str, Path], hyperparameters: dict[str, str], model_dir: Path, output_dir: Path
    ) -> TrainingOutcome:
        digest = hashlib.sha256(json.dumps(hyperparameters, sort_keys=True).encode())
        for name in sorted(channels):
            for path in sorted(channels[name].rglob("*")):
                if path.is_file():
                    digest.update(path.relative_to(channels[name]).as_posix().encode() + path.read_bytes())
        key = digest.hexdigest()
        if key not in self.cache:
            self.runs += 1
            kept = self.cache_dir / key
            outcome = run_train_py(channels, hyperparameters, kept / "model", kept / "output")
            self.cache[key] = (kept / "model", kept / "output", outcome)
        kept_model, kept_output, outcome = self.cache[key]
        if kept_model.exists():
            shutil.copytree(kept_model, model_dir, dirs_exist_ok=True)
        if kept_output.exists():
            shutil.copytree(kept_output, output_dir, dirs_exist_ok=True)
        return outcome


@dataclass
class Orchestration:
    """moto with the template's training state machine, its functions routed to the real handlers."""

    s3: Any
    sfn: Any
    bucket: str
    topic_arn: str
    queue_url: str
    state_machine_arn: str
    functions: dict[str, LocalFunction]
    sagemaker: LocalSageMaker
    invokers: dict[str, Any]
    template: dict[str, Any]
    sign_off_queue_url: str

    def run(self, payload: dict[str, Any], name: str | None = None) -> ExecutionResult:
        return run_execution(self.sfn, self.state_machine_arn, payload, name=name, timeout_s=300)

    def get_json(self, key: str) -> Any | None:
        try:
            return json.loads(self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read())
        except self.s3.exceptions.NoSuchKey:
            return None

    def notifications(self, queue_url: str | None = None) -> list[dict[str, Any]]:
        sqs = boto3.client("sqs", region_name=REGION)
        messages = sqs.receive_message(QueueUrl=queue_url or self.queue_url, MaxNumberOfMessages=10).get(
            "Messages", []
        )
        return [json.loads(m["Body"]) for m in messages]

    def state_machine(self, name: str, parameters: dict[str, str]) -> str:
        """Another state machine from the same definition, with these template parameters."""
        resolver = local_resolver(self.template, self.bucket, self.topic_arn, parameters)
        return create_state_machine(self.sfn, definition_from_template(REPO, self.template, resolver), name)


def _topic_with_inbox(name: str) -> tuple[str, str]:
    """An SNS topic whose messages land, raw, in an SQS queue the tests read."""
    sns = boto3.client("sns", region_name=REGION)
    sqs = boto3.client("sqs", region_name=REGION)
    topic_arn = sns.create_topic(Name=name)["TopicArn"]
    queue_url = sqs.create_queue(QueueName=f"{name}-inbox")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(
        TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "true"}
    )
    return topic_arn, queue_url


SIGN_OFF_TOPIC = "sign-off"


def local_resolver(
    template: dict[str, Any], bucket: str, topic_arn: str, parameters: dict[str, str] | None = None
) -> Resolver:
    """Local names for what the state machine and the two functions reference."""
    refs = {
        "DataBucket": bucket,
        "TrainingFailureTopic": topic_arn,
        "SignOffTopic": f"arn:aws:sns:{REGION}:{ACCOUNT}:{SIGN_OFF_TOPIC}",
        "CatalogTable": "medimage-catalog",
        "GateFunction": "GateFunction",
        "PromoteFunction": "PromoteFunction",
    }
    attrs = {
        ("SageMakerTrainingRole", "Arn"): f"arn:aws:iam::{ACCOUNT}:role/medimage-sagemaker",
        ("GateFunction", "Arn"): f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:GateFunction",
        ("PromoteFunction", "Arn"): f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:PromoteFunction",
    }
    return Resolver(template, refs, attrs, parameters or {}, REGION, ACCOUNT)


@pytest.fixture(scope="module")
def orchestration(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Orchestration]:
    from moto import mock_aws

    from medimage.adapters.aws import reset_clients

    with mock_aws(config=moto_config()):
        reset_clients()
        s3 = boto3.client("s3", region_name=REGION)
        bucket = "medimage-orchestration-test"
        s3.create_bucket(Bucket=bucket)
        topic_arn, queue_url = _topic_with_inbox("training-failures")
        _, sign_off_queue_url = _topic_with_inbox(SIGN_OFF_TOPIC)
        template = load_template(REPO / "template.yaml")
        resolver = local_resolver(template, bucket, topic_arn)
        functions = template_functions(REPO, template, resolver, ["GateFunction", "PromoteFunction"])
        sfn = boto3.client("stepfunctions", region_name=REGION)
        invokers = {name: fn.invoke for name, fn in functions.items()}
        # The weights go where `medimage deploy` puts them, as LocalAws.running() does; without them the
        # jobs get no pretrained channel and the preset's trainer uses its other sources.
        folder = local_pretrained_dir(REPO)
        staged = (folder / MOBILENET_V2_FILE).is_file()
        if staged:
            upload_pretrained(s3, bucket, folder)
        sagemaker = LocalSageMaker(
            trainer=MemoTrainer(tmp_path_factory.mktemp("trained")),
            optional_channels=frozenset() if staged else frozenset({PRETRAINED_CHANNEL}),
        )
        with local_training_workflow(invokers, sagemaker, retry_delay_scale=0.01):
            arn = create_state_machine(sfn, definition_from_template(REPO, template, resolver), "training")
            yield Orchestration(
                s3,
                sfn,
                bucket,
                topic_arn,
                queue_url,
                arn,
                functions,
                sagemaker,
                invokers,
                template,
                sign_off_queue_url,
            )
        reset_clients()
