"""Fixtures of the guarantee tests: moto in-process, a rendezvous that makes concurrent writers really
race, a small model registry lab, and a trainer that stands in for train.py with a real (tiny, untrained)
TFLite model so the Step Functions runs take seconds."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest

from medimage.adapters.aws import reset_clients
from medimage.adapters.registry_store import S3RegistryStore
from medimage.adapters.s3 import S3ObjectStore
from medimage.core import layout
from medimage.core.executions import TrainingResult
from medimage.core.preprocess import PreprocessSpec
from medimage.faults.audit import PipelineAuditor
from medimage.local.account import REGION
from medimage.services.promote import PromoteRequest, PromoteService
from tests.fakes import InMemoryArtifacts

os.environ.setdefault("MEDIMAGE_TF_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

BUCKET = "medimage-faults-test"
DATASET = "chest"
LABELS = ["normal", "pneumonia"]


@pytest.fixture
def bucket() -> Iterator[Any]:
    """An S3 client on moto with ``BUCKET`` created (versioned: a rewrite of a key leaves two versions)."""
    from moto import mock_aws

    with mock_aws():
        reset_clients()
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET)
        s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        yield s3
    reset_clients()


class WriteRendezvous:
    """Makes concurrent writers of one key really race: the first ``PutObject`` of each thread named in
    ``order`` to a key ending in ``suffix`` waits until all of them have read and arrived, then they write
    one after the other in ``order``. Clients made inside the block carry the hooks."""

    def __init__(self, suffix: str, order: list[str], timeout_s: float = 30.0) -> None:
        self.suffix = suffix
        self.order = order
        self.timeout_s = timeout_s
        self.arrived: set[str] = set()
        self.turn = 0
        self.writing: str | None = None
        self._cond = threading.Condition()

    def _ours(self, params: Any) -> str | None:
        name = threading.current_thread().name
        key = params.get("Key", "") if isinstance(params, dict) else ""
        return name if key.endswith(self.suffix) and name in self.order else None

    def before(self, params: Any = None, **_: Any) -> None:
        name = self._ours(params)
        if name is None:
            return
        with self._cond:
            if self.order.index(name) < self.turn:
                return  # this thread already had its turn: its later writes are not held
            self.arrived.add(name)
            self._cond.notify_all()
            released = self._cond.wait_for(
                lambda: self.arrived == set(self.order) and self.order[self.turn] == name, self.timeout_s
            )
            assert released, f"{name} waited in vain for {set(self.order) - self.arrived}"
            self.writing = name

    def after(self, **_: Any) -> None:
        with self._cond:
            if self.writing == threading.current_thread().name:
                self.writing = None
                self.turn += 1
                self._cond.notify_all()

    def __enter__(self) -> WriteRendezvous:
        events = boto3._get_default_session().events
        events.register("before-parameter-build.s3.PutObject", self.before, unique_id="rendezvous-before")
        events.register("after-call.s3.PutObject", self.after, unique_id="rendezvous-after")
        reset_clients()
        return self

    def __exit__(self, *exc: object) -> None:
        events = boto3._get_default_session().events
        events.unregister("before-parameter-build.s3.PutObject", unique_id="rendezvous-before")
        events.unregister("after-call.s3.PutObject", unique_id="rendezvous-after")
        reset_clients()


def run_threads(targets: dict[str, Callable[[], Any]]) -> dict[str, Any]:
    """Run each target in a thread of that name; {name: its result or the exception it raised}."""
    results: dict[str, Any] = {}

    def body(name: str, target: Callable[[], Any]) -> None:
        try:
            results[name] = target()
        except Exception as exc:
            results[name] = exc

    threads = [threading.Thread(target=body, args=item, name=item[0]) for item in targets.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
        assert not thread.is_alive(), f"{thread.name} did not finish"
    return results


def job_uri(version: str) -> str:
    return f"s3://{BUCKET}/training/{DATASET}/{version}/output/model.tar.gz"


@dataclass
class ModelLab:
    """Trained versions (model.tar.gz members + a passed gate.json) and the promote service on moto S3."""

    artifacts: InMemoryArtifacts = field(default_factory=InMemoryArtifacts)

    @property
    def store(self) -> S3ObjectStore:
        return S3ObjectStore(BUCKET)

    def trained(self, version: str, champion: str | None, accuracy: float = 0.9) -> PromoteRequest:
        model = f"model bytes of {version}".encode()
        self.artifacts.outputs[job_uri(version)] = {
            "model.tflite": model,
            "labels.txt": "\n".join(LABELS).encode(),
            "evaluation.json": json.dumps({"test": {"accuracy": accuracy}}).encode(),
            "model.json": json.dumps({"labels": LABELS, "model_file": "model.tflite"}).encode(),
        }
        metrics = {"manifest_version": "m1", "accuracy": accuracy, "recall": {}, "labels": LABELS, "n": 10}
        gate = {
            "passed": True,
            "metrics": metrics,
            "champion": None if champion is None else {"version": champion},
        }
        self.store.put_json(layout.model_prefix(DATASET, version) + "gate.json", gate)
        return PromoteRequest(DATASET, BUCKET, TrainingResult(version, "Completed", job_uri(version), []))

    def promoter(self) -> PromoteService:
        """A service with clients of its own (made now: after any hook a test registered)."""
        return PromoteService(self.store, S3RegistryStore(BUCKET, sleep=lambda _: None), self.artifacts)

    def registry(self) -> S3RegistryStore:
        return S3RegistryStore(BUCKET, sleep=lambda _: None)

    def pointer(self) -> dict[str, Any]:
        return self.store.get_json(layout.production_pointer_key(DATASET))

    def production_problems(self) -> list[str]:
        auditor = PipelineAuditor(boto3.client("s3", region_name=REGION), None, BUCKET, "")
        return auditor.production(DATASET)[1]


@pytest.fixture
def lab(bucket: Any) -> ModelLab:
    return ModelLab()


# ------------------------------------------------------------------------------------ a quick trainer
@pytest.fixture(scope="session")
def tiny_tflite(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A real, untrained 2-class TFLite model on 32x32 gray input (softmax output), made once."""
    import tensorflow as tf

    keras = tf.keras
    keras.utils.set_random_seed(3)
    model = keras.Sequential(
        [
            keras.Input((32, 32, 1)),
            keras.layers.Rescaling(1.0 / 255),
            keras.layers.Conv2D(4, 3, strides=2, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(len(LABELS), activation="softmax"),
        ]
    )
    return tf.lite.TFLiteConverter.from_keras_model(model).convert()


@dataclass
class QuickRun:
    ok: bool
    seconds: float = 0.1
    metrics: dict[str, float] = field(default_factory=dict)
    failure_reason: str | None = None


@dataclass
class QuickTrainer:
    """Stands in for train.py under the script-mode contract: writes the model directory (a real TFLite
    model, model.json, labels.txt, evaluation.json with ``accuracy``). ``fail`` makes the job fail;
    ``barrier`` holds each job until that many are training, so their executions finish at once."""

    model: bytes
    accuracy: float = 0.95
    fail: bool = False
    barrier: threading.Barrier | None = None
    jobs: list[str] = field(default_factory=list)

    def __call__(
        self, channels: dict[str, Path], hyperparameters: dict[str, str], model_dir: Path, output_dir: Path
    ) -> QuickRun:
        self.jobs.append(hyperparameters.get("manifest-version", ""))
        if self.barrier is not None:
            self.barrier.wait(60)
        if self.fail:
            return QuickRun(ok=False, failure_reason="the job ran out of memory")
        model_dir.mkdir(parents=True, exist_ok=True)
        (model_dir / "model.tflite").write_bytes(self.model)
        (model_dir / "labels.txt").write_text("\n".join(LABELS) + "\n", encoding="utf-8")
        split = {
            "n": 10,
            "accuracy": self.accuracy,
            "per_class": {label: {"recall": self.accuracy, "support": 5} for label in LABELS},
            "macro_auc": self.accuracy,
            "labels": LABELS,
        }
        (model_dir / "evaluation.json").write_text(
            json.dumps({"val": split, "test": split}), encoding="utf-8"
        )
        meta = {
            "format_version": 1,
            "labels": LABELS,
            "preprocess": PreprocessSpec(image_size=32, channels=1).to_dict(),
            "model_file": "model.tflite",
            "float_model_file": "model.tflite",
            "outputs": {"model.tflite": "probabilities"},
            "manifest_version": hyperparameters.get("manifest-version"),
        }
        (model_dir / "model.json").write_text(json.dumps(meta), encoding="utf-8")
        output_dir.mkdir(parents=True, exist_ok=True)
        return QuickRun(ok=True, metrics={"test:accuracy": self.accuracy})
