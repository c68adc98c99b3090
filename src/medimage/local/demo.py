"""`medimage demo`: the whole pipeline on the in-process AWS emulation, one stage after another.

Upload a labeled dataset -> annotate (S3 -> SQS -> Lambda) -> `_commit` -> split -> the real Step
Functions definition runs: SageMaker training (the real train.py), gate, promote -> held-back images
dropped for labeling -> one prediction through the API handler -> ``summary.json``.
"""

from __future__ import annotations

import io
import json
import shutil
import sys
import tarfile
import time
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3

from medimage.adapters.s3 import S3ObjectStore
from medimage.core import layout
from medimage.core.gate import verdict
from medimage.core.presets import get_preset
from medimage.local.demo_data import UploadFile, duplicate_of, hold_back, scan
from medimage.local.environment import LocalAws
from medimage.local.synthetic import SYNTHETIC_NOTE, bad_files, generate, write_tree
from medimage.ops.executions import wait_for_execution

# The pretrained network learns the synthetic images in a few epochs; the preset's own count (for real
# data) would only make the demo slower.
SYNTHETIC_EPOCHS = 4


@dataclass
class DemoOptions:
    data: Path | None = None
    preset: str = "chestxray2017"
    dataset: str | None = None
    workdir: Path = Path("demo-output")
    epochs: int | None = None
    min_accuracy: float | None = None
    holdout_share: float = 0.1
    synthetic_per_class: int = 60
    synthetic_size: int = 96
    seed: int = 7


@dataclass
class DemoState:
    timings: dict[str, float] = field(default_factory=dict)
    images: dict[str, int] = field(default_factory=dict)


class Reporter:
    """Plain, line-oriented progress: readable in a terminal and in a CI log. It writes to the
    terminal's stdout even while the emulated functions' output is redirected to ``lambda.log``."""

    def __init__(self, emit: Callable[[str], None] | None = None) -> None:
        stream = sys.stdout
        self.emit = emit or (lambda text: print(text, file=stream, flush=True))
        self.stage_no = 0

    def stage(self, title: str) -> None:
        self.stage_no += 1
        self.emit(f"\n[{self.stage_no}] {title}")

    def line(self, text: str) -> None:
        self.emit(f"    {text}")


def _timed(state: DemoState, name: str, start: float) -> None:
    state.timings[name] = round(time.perf_counter() - start, 2)


def run_demo(opts: DemoOptions, report: Reporter | None = None) -> dict[str, Any]:
    report = report or Reporter()
    preset = get_preset(opts.preset)
    dataset = layout.check_dataset_name(opts.dataset or preset.name)
    workdir = opts.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    state = DemoState()
    start_all = time.perf_counter()

    report.stage("Data")
    if opts.data is None:
        data_dir = workdir / "synthetic-data"
        shutil.rmtree(data_dir, ignore_errors=True)
        generated = generate(
            preset, per_class=opts.synthetic_per_class, size=opts.synthetic_size, seed=opts.seed
        )
        first_folder = generated[0].folder
        write_tree(data_dir, generated, bad_files(opts.synthetic_size), bad_folder=first_folder)
        report.line(
            f"{SYNTHETIC_NOTE}: {len(generated)} images, {len(bad_files())} bad files and one "
            f"duplicate -> {data_dir}"
        )
    else:
        data_dir = opts.data.resolve()
        if not data_dir.is_dir():
            raise NotADirectoryError(f"--data {data_dir} is not a folder")
    files = scan(data_dir, preset)
    uploads, held_back = hold_back(files, opts.holdout_share)
    if opts.data is None:
        uploads.append(duplicate_of(next(f for f in uploads if f.label)))
    report.line(
        f"{len(files)} files in {len({f.folder for f in files})} folders; "
        f"{len(held_back)} valid images held back for labeling ({opts.holdout_share:.0%} per class)"
    )

    parameters = {"MinNewImages": "1"}
    epochs = opts.epochs if opts.epochs is not None else (SYNTHETIC_EPOCHS if opts.data is None else None)
    if epochs is not None:
        parameters["TrainingEpochs"] = str(epochs)
    if opts.min_accuracy is not None:
        parameters["MinAccuracyOverride"] = str(opts.min_accuracy)
    env = LocalAws(
        parameters=parameters,
        # Quiet: Powertools' loggers, and those in Lambda's JSON log format (the inference function).
        env_overrides={
            "POWERTOOLS_LOG_LEVEL": "WARNING",
            "AWS_LAMBDA_LOG_LEVEL": "WARN",
            "MODEL_CHECK_INTERVAL_S": "0",
        },
    )
    training_log = workdir / "training.log"

    def trainer(channels, hyperparameters, model_dir, output_dir):  # type: ignore[no-untyped-def]
        from medimage.training.runner import run_train_script

        def on_line(text: str) -> None:
            if text.startswith(("epoch", "Epoch", "metric", "train.py")) or "early stop" in text.lower():
                report.line(f"  train.py | {text.strip()[:140]}")

        return run_train_script(
            channels, hyperparameters, model_dir, output_dir, on_line=on_line, log_path=training_log
        )

    lambda_log = workdir / "lambda.log"
    # The functions' own output (structured logs, EMF metrics) goes where CloudWatch would keep it.
    with (
        lambda_log.open("w", encoding="utf-8") as log,
        redirect_stdout(log),
        redirect_stderr(log),
        env.running(trainer=trainer, work_dir=workdir),
    ):
        s3 = boto3.client("s3")
        bucket = env.bucket
        report.line(
            f"emulated AWS from template.yaml: bucket {bucket}, table {env.table}, "
            f"{len(env.functions)} functions, state machine {env.state_machine_arn.rsplit(':', 1)[1]}"
        )

        report.stage(f"Upload {len(uploads)} files to s3://{bucket}/incoming/labeled/{dataset}/ and annotate")
        t = time.perf_counter()
        for f in uploads:
            s3.put_object(
                Bucket=bucket,
                Key=f"{layout.LABELED_PREFIX}{dataset}/{f.folder}/{f.name}",
                Body=f.path.read_bytes(),
            )
        pumped = env.pump()
        from medimage.adapters.catalog import DynamoCatalog

        snapshot = DynamoCatalog(env.table).snapshot(dataset)
        state.images = {
            "uploaded": len(uploads),
            "accepted": len(snapshot.records),
            "duplicates": snapshot.duplicates,
            "quarantined": sum(snapshot.quarantined.values()),
            "held_back": len(held_back),
        }
        _timed(state, "upload_and_annotate", t)
        report.line(
            f"{pumped.invocations} annotate invocations: {state.images['accepted']} accepted, "
            f"{state.images['duplicates']} duplicates, {state.images['quarantined']} quarantined "
            f"{dict(snapshot.quarantined) or ''}"
        )

        report.stage("Commit the batch: split writes a manifest version and starts training")
        t = time.perf_counter()
        s3.put_object(Bucket=bucket, Key=layout.commit_key(dataset), Body=b"")
        split_results = [r for name, r in env.pump().results if name == "SplitFunction"]
        split = split_results[0]["results"][0] if split_results else {}
        _timed(state, "split", t)
        report.line(split.get("message", "split did not run"))
        execution_arn = split.get("execution_arn")

        report.stage("Training workflow (statemachine/training.asl.json in the Step Functions interpreter)")
        t = time.perf_counter()
        described = (
            wait_for_execution(env.client("stepfunctions"), execution_arn, timeout_s=3600, poll_s=0.5)
            if execution_arn
            else {"status": "NOT_STARTED"}
        )
        _timed(state, "training_workflow", t)
        output = json.loads(described.get("output") or "{}")
        gate_key = ((output.get("gate") or {}).get("decision") or {}).get("gate_key")
        decision = (_get_json(s3, bucket, gate_key) if gate_key else None) or {}
        status = described["status"]
        report.line(
            f"execution {status}"
            + (
                f": {described.get('error')} {described.get('cause', '')[:300]}"
                if status != "SUCCEEDED"
                else ""
            )
        )
        if decision:
            metrics = decision.get("metrics", {})
            report.line(
                f"gate {verdict(decision)}: test accuracy "
                f"{metrics.get('accuracy')} (n={metrics.get('n')}), recall {metrics.get('recall')}"
            )
            for reason in decision.get("reasons", []):
                report.line(f"  - {reason}")
        pointer = _get_json(s3, bucket, layout.production_pointer_key(dataset))
        model_version = pointer["version"] if pointer else None
        artifacts = _collect_artifacts(s3, bucket, dataset, output, model_version, workdir)
        report.line(f"production model: {model_version or 'none (nothing promoted)'}")

        report.stage(f"Drop {len(held_back)} held-back images into incoming/unlabeled/{dataset}/")
        t = time.perf_counter()
        predictions = _label_held_back(env, s3, dataset, held_back, model_version, workdir, report)
        _timed(state, "drop_to_label", t)

        report.stage("One prediction through the API handler (an API Gateway proxy event)")
        t = time.perf_counter()
        api = _api_call(env, dataset, held_back or [f for f in uploads if f.label], report)
        _timed(state, "api", t)

    if predictions.get("folder"):
        artifacts["predictions"] = predictions["folder"]
    state.timings["total"] = round(time.perf_counter() - start_all, 2)
    summary = {
        "execution_status": status,
        "gate": {
            "passed": bool(decision.get("passed")),
            "metrics": decision.get("metrics"),
            "reasons": decision.get("reasons", []),
        },
        "model_version": model_version,
        "images": state.images,
        "predictions": predictions,
        "api": api,
        "timings_s": state.timings,
        "dataset": dataset,
        "preset": preset.name,
        "data": str(data_dir),
        "synthetic": opts.data is None,
        "artifacts": artifacts,
    }
    (workdir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    report.stage("Where to look")
    report.line(f"summary:      {workdir / 'summary.json'}")
    report.line(f"workdir:      {workdir}")
    for name, path in artifacts.items():
        report.line(f"{name + ':':13} {path}")
    report.line(f"{'lambda_logs:':13} {lambda_log}")
    report.line(f"total {state.timings['total']} s")
    return summary


def _get_json(s3: Any, bucket: str, key: str) -> Any:
    return S3ObjectStore(bucket, s3).get_json(key)


def _collect_artifacts(
    s3: Any, bucket: str, dataset: str, output: dict[str, Any], model_version: str | None, workdir: Path
) -> dict[str, str]:
    """Copy what a person wants to open out of the emulated bucket into the workdir."""
    found: dict[str, str] = {}
    training = output.get("training") or {}
    model_uri = (training.get("ModelArtifacts") or {}).get("S3ModelArtifacts", "")
    if model_uri:
        key = model_uri.split(f"s3://{bucket}/", 1)[1]
        out_key = key.rsplit("/", 1)[0] + "/output.tar.gz"
        for archive_key, target in ((key, workdir / "model"), (out_key, workdir / "evaluation")):
            shutil.rmtree(target, ignore_errors=True)
            body = S3ObjectStore(bucket, s3).get_bytes(archive_key)
            if body is None:
                continue
            with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as tar:
                tar.extractall(target, filter="data")
        if (workdir / "model" / "model.tflite").exists():
            found["model"] = str(workdir / "model" / "model.tflite")
        if (workdir / "evaluation").is_dir():
            found["evaluation"] = str(workdir / "evaluation")
    if model_version:
        found["registry"] = f"s3://{bucket}/{layout.model_prefix(dataset, model_version)}"
    if (workdir / "training.log").exists():
        found["training_log"] = str(workdir / "training.log")
    return found


def _label_held_back(
    env: LocalAws,
    s3: Any,
    dataset: str,
    held_back: list[UploadFile],
    model_version: str | None,
    workdir: Path,
    report: Reporter,
) -> dict[str, Any]:
    if not held_back:
        report.line("nothing held back (--holdout-share 0)")
        return {"count": 0, "accuracy_on_held_back": None}
    if model_version is None:
        report.line("no production model: nothing to label with, the images were not dropped")
        return {"count": 0, "accuracy_on_held_back": None}
    for f in held_back:
        s3.put_object(
            Bucket=env.bucket,
            Key=f"{layout.UNLABELED_PREFIX}{dataset}/{f.name}",
            Body=f.path.read_bytes(),
        )
    env.pump()
    target = workdir / "predictions"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    correct = count = 0
    for f in held_back:
        result = _get_json(
            s3, env.bucket, layout.prediction_key(dataset, f"{layout.UNLABELED_PREFIX}{dataset}/{f.name}")
        )
        if result is None:
            continue
        count += 1
        correct += int(result.get("label") == f.label)
        (target / f"{f.name}.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    lines = []
    listing = s3.list_objects_v2(Bucket=env.bucket, Prefix=f"{layout.PREDICTIONS_PREFIX}{dataset}/")
    for item in listing.get("Contents", []):
        if item["Key"].endswith("prediction_output.txt"):
            lines.append(s3.get_object(Bucket=env.bucket, Key=item["Key"])["Body"].read().decode())
    (target / "prediction_output.txt").write_text("".join(lines), encoding="utf-8")
    accuracy = round(correct / count, 4) if count else None
    for line in "".join(lines).splitlines()[:5]:
        report.line(f"prediction_output.txt | {line}")
    report.line(f"{count} predictions written to predictions/{dataset}/; accuracy on held-back: {accuracy}")
    return {"count": count, "accuracy_on_held_back": accuracy, "folder": str(target)}


def _api_call(env: LocalAws, dataset: str, candidates: list[UploadFile], report: Reporter) -> dict[str, Any]:
    from medimage.local.apigateway import to_proxy_event

    if not candidates:
        return {"status_code": None}
    image = candidates[0]
    event = to_proxy_event(
        "POST", f"/predict?dataset={dataset}", {"Content-Type": "image/jpeg"}, image.path.read_bytes()
    )
    function = next(fn for name, fn in env.functions.items() if "Inference" in name)
    response = function.invoke(event)
    body = json.loads(response.get("body") or "{}")
    report.line(
        f"POST /predict ({image.name}, true label {image.label}) -> {response.get('statusCode')} "
        f"{json.dumps(body)[:300]}"
    )
    return {
        "status_code": response.get("statusCode"),
        "response": body,
        "image": image.name,
        "true_label": image.label,
    }
