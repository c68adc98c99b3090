"""The model cache against a fake ModelSource and a fake clock: no S3, no waiting."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from medimage.inference.cache import ModelCache, ModelUnavailable, NoProductionModel, ServingPointer


class FakeSource:
    def __init__(self) -> None:
        self.pointer: dict[str, Any] | None = None
        self.dirs: dict[str, Path] = {}
        self.reads = 0
        self.fetches = 0
        self.fail_reads = False

    def promote(self, version: str, model_dir: Path) -> None:
        sha = hashlib.sha256((model_dir / "model.tflite").read_bytes()).hexdigest()
        self.pointer = {
            "version": version,
            "model_key": f"models/ds/{version}/model.tflite",
            "model_sha256": sha,
        }
        self.dirs[version] = model_dir

    def read_pointer(self, dataset: str) -> dict[str, Any] | None:
        self.reads += 1
        if self.fail_reads:
            raise ConnectionError("registry unreachable")
        return self.pointer

    def download(self, pointer: ServingPointer) -> Path:
        self.fetches += 1
        return self.dirs[pointer.version]


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def fake() -> tuple[FakeSource, Clock, ModelCache]:
    source, clock = FakeSource(), Clock()
    return source, clock, ModelCache(source, check_interval_s=30, clock=clock)


def test_pointer_is_read_at_most_once_per_interval(fake, model_v1, model_v2):
    source, clock, cache = fake
    source.promote("v1", model_v1)
    for t in (0, 5, 29.9):
        clock.now = t
        assert cache.get("ds").version == "v1"
    assert (source.reads, source.fetches) == (1, 1)
    source.promote("v2", model_v2)
    clock.now = 29.9
    assert cache.get("ds").version == "v1"
    clock.now = 30
    assert cache.get("ds").version == "v2"
    assert (source.reads, source.fetches) == (2, 2)


def test_unchanged_pointer_is_not_fetched_again(fake, model_v1):
    source, clock, cache = fake
    source.promote("v1", model_v1)
    for t in range(0, 300, 30):
        clock.now = t
        cache.get("ds")
    assert source.reads == 10 and source.fetches == 1


def test_refused_pointer_is_not_refetched_on_every_check(fake, model_v1, model_v2):
    source, clock, cache = fake
    source.promote("v1", model_v1)
    cache.get("ds")
    source.promote("v2", model_v2)
    source.pointer = {**source.pointer, "model_sha256": "0" * 64}
    for t in (30, 60, 90):
        clock.now = t
        assert cache.get("ds").version == "v1"
    assert source.fetches == 2  # v1 once, the bad v2 once; retried only after retry_refused_s
    clock.now = 30 + cache.retry_refused_s
    cache.get("ds")
    assert source.fetches == 3


def test_registry_errors_keep_the_loaded_model(fake, model_v1):
    source, clock, cache = fake
    source.promote("v1", model_v1)
    cache.get("ds")
    source.fail_reads = True
    clock.now = 60
    assert cache.get("ds").version == "v1"


def test_registry_error_without_a_model_is_unavailable(fake):
    source, _, cache = fake
    source.fail_reads = True
    with pytest.raises(ModelUnavailable, match="cannot be read"):
        cache.get("ds")


def test_no_pointer_is_no_production_model(fake):
    with pytest.raises(NoProductionModel, match="no production model for dataset 'ds'"):
        fake[2].get("ds")


def test_malformed_pointer_is_refused(fake):
    source, _, cache = fake
    source.pointer = {"version": "v1"}
    with pytest.raises(ModelUnavailable, match="lacks model_key, model_sha256"):
        cache.get("ds")
