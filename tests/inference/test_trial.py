"""The silent trial through the handler, on moto S3: a candidate beside production classifies a share of
the images after the answer is ready; no caller, result, review item or batch file ever shows it, and a
candidate that fails changes nothing."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from medimage.core.layout import prediction_key
from medimage.core.trial import TrialPair
from medimage.inference.trial import SilentTrial, key_draw
from medimage.local.functions import load_handler_module

from .conftest import BUCKET, DATASET, api_event, call_api, invoke, jpeg_bytes, publish
from .test_drop_to_label import keys_under, read, sqs_event, upload

KEYS = [f"incoming/unlabeled/{DATASET}/trial-{i}.jpeg" for i in range(4)]
CANDIDATE = "v2-candidate"  # a "-" never occurs in base64, so no heatmap contains it by chance
PAIRS = f"trials/{DATASET}/{CANDIDATE}/pairs/"


def nominate(s3: Any, model_dir: Path, version: str, payload: bytes | None = None) -> None:
    """Upload a model version and name it the candidate beside the production pointer."""
    prefix = f"models/{DATASET}/{version}/"
    content = (model_dir / "model.tflite").read_bytes()
    s3.put_object(
        Bucket=BUCKET, Key=prefix + "model.tflite", Body=payload if payload is not None else content
    )
    for name in ("model.json", "labels.txt"):
        s3.put_object(Bucket=BUCKET, Key=prefix + name, Body=(model_dir / name).read_bytes())
    key = f"models/{DATASET}/production.json"
    pointer = json.loads(read(s3, key))
    pointer["candidate"] = {
        "version": version,
        "model_key": prefix + "model.tflite",
        "model_sha256": hashlib.sha256(content).hexdigest(),
        "promoted_at": "2026-12-01T00:00:00+00:00",
        "metrics": {},
        "champion": pointer["version"],
    }
    s3.put_object(Bucket=BUCKET, Key=key, Body=json.dumps(pointer).encode())


def stored_pairs(s3: Any, prefix: str = PAIRS) -> list[TrialPair]:
    return [
        TrialPair.from_dict(json.loads(line))
        for key in keys_under(s3, prefix)
        for line in read(s3, key).decode().splitlines()
    ]


def without_latency(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != "latency_ms"}


@pytest.fixture
def every_image(monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole share, pairs written one at a time, and every answer sent to review."""
    monkeypatch.setenv("CANDIDATE_SHARE", "1")
    monkeypatch.setenv("TRIAL_FLUSH_PAIRS", "1")
    monkeypatch.setenv("REVIEW_THRESHOLD", "0.99")


def answers(module: Any, images: list[bytes], query: dict[str, str] | None = None) -> list[dict]:
    out = []
    for image in images:
        status, body = call_api(module, api_event(image, query=query))
        assert status == 200, body
        out.append(body)
    return out


def test_api_answers_are_production_s_and_each_pair_is_recorded(s3, every_image, model_v1, model_v2):
    images = [jpeg_bytes(seed=i) for i in range(3)]
    publish(s3, model_v1, "v1")
    alone = answers(load_handler_module(), images)
    nominate(s3, model_v2, CANDIDATE)
    handler = load_handler_module()
    with_trial = answers(handler, images) + answers(handler, images[:1], {"explain": "true"})
    assert [without_latency(b) for b in with_trial[:3]] == [without_latency(b) for b in alone]
    assert all(CANDIDATE not in json.dumps(b) for b in with_trial)  # nothing of the candidate, anywhere
    pairs = stored_pairs(s3)
    assert len(pairs) == 4 and {p.source for p in pairs} == {"api"}
    for pair, body in zip(pairs, with_trial, strict=True):
        assert pair.image_key is None  # an API image has no key: nothing to identify it by
        assert (pair.champion.version, pair.champion.label, pair.champion.confidence) == (
            "v1",
            body["label"],
            body["confidence"],
        )
        assert pair.champion.needs_review == body["needs_review"] is True
        assert pair.candidate.version == CANDIDATE and pair.candidate.latency_ms > 0
    # The candidate's own answer: what it gives when it serves the same image as production.
    direct = (
        handler.service().cache.candidate(DATASET).classifier.predict_bytes(images[0], review_threshold=0.99)
    )
    assert (pairs[0].candidate.label, pairs[0].candidate.confidence) == (direct.label, direct.confidence)


def test_drop_to_label_output_is_unchanged_and_pairs_carry_the_image_key(
    s3, every_image, model_v1, model_v2, monkeypatch
):
    publish(s3, model_v1, "v1")
    for i, key in enumerate(KEYS):
        upload(s3, key, jpeg_bytes(seed=i))
    event = sqs_event(*KEYS)
    assert invoke(load_handler_module(), event) == {"batchItemFailures": []}
    volatile = ("latency_ms", "predicted_at")

    def outputs() -> dict[str, Any]:
        found = {}
        for key in keys_under(s3, "predictions/") + keys_under(s3, "review/"):
            data = read(s3, key)
            if key.endswith(".json") and not key.endswith(".fhir.json"):
                found[key] = {k: v for k, v in json.loads(data).items() if k not in volatile}
            elif not key.endswith((".fhir.json", ".sr.dcm")):
                found[key] = data
        return found

    before = outputs()
    assert any(k.startswith("review/") for k in before) and any(k.endswith(".txt") for k in before)
    for key in keys_under(s3, "predictions/") + keys_under(s3, "review/"):
        s3.delete_object(Bucket=BUCKET, Key=key)
    nominate(s3, model_v2, CANDIDATE)
    monkeypatch.setenv("TRIAL_FLUSH_PAIRS", "1000")  # the batch's end writes them, however few
    assert invoke(load_handler_module(), event) == {"batchItemFailures": []}
    assert outputs() == before
    pairs = stored_pairs(s3)
    assert len(keys_under(s3, PAIRS)) == 1  # the batch's pairs in one object
    assert sorted(p.image_key for p in pairs) == sorted(KEYS) and {p.source for p in pairs} == {"s3"}
    for pair in pairs:
        result = json.loads(read(s3, prediction_key(DATASET, pair.image_key)))
        assert (pair.champion.label, pair.champion.needs_review) == (result["label"], result["needs_review"])
        assert CANDIDATE not in json.dumps(result)


def test_a_candidate_that_raises_changes_nothing(s3, every_image, model_v1, model_v2, monkeypatch):
    publish(s3, model_v1, "v1")
    nominate(s3, model_v2, CANDIDATE)
    handler = load_handler_module()
    image = jpeg_bytes(seed=5)
    first = answers(handler, [image])  # loads the candidate
    candidate = handler.service().cache.candidate(DATASET)

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the candidate crashed")

    monkeypatch.setattr(candidate.classifier, "classify_array", boom)
    again = answers(handler, [image])
    assert without_latency(again[0]) == without_latency(first[0])
    upload(s3, KEYS[0], image)
    assert invoke(handler, sqs_event(KEYS[0])) == {"batchItemFailures": []}
    result = json.loads(read(s3, prediction_key(DATASET, KEYS[0])))
    assert result["label"] == first[0]["label"]
    assert len(stored_pairs(s3)) == 1  # only the pair from before the crash


def test_a_candidate_that_cannot_be_loaded_changes_nothing(s3, every_image, model_v1, model_v2):
    publish(s3, model_v1, "v1")
    nominate(s3, model_v2, CANDIDATE, payload=b"not the bytes the registry names")
    handler = load_handler_module()
    image = jpeg_bytes(seed=6)
    status, body = call_api(handler, api_event(image))
    assert status == 200 and body["model_version"] == "v1"
    assert keys_under(s3, "trials/") == []


def test_no_candidate_is_loaded_at_share_zero(s3, monkeypatch, model_v1, model_v2):
    monkeypatch.setenv("CANDIDATE_SHARE", "0")
    publish(s3, model_v1, "v1")
    nominate(s3, model_v2, CANDIDATE)
    handler = load_handler_module()
    answers(handler, [jpeg_bytes(seed=7)])
    assert handler.trial.cache_info().currsize == 0 and keys_under(s3, "trials/") == []


# ---------------------------------------------------------------- SilentTrial on its own


class FakeCache:
    def __init__(self, has: bool = True) -> None:
        self.has = has

    def has_candidate(self, dataset: str) -> bool:
        return self.has

    def candidate(self, dataset: str) -> None:
        raise AssertionError("not sampled: the candidate must not be asked for")


class ListSink:
    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def put_bytes(self, key: str, data: bytes, content_type: str = "") -> None:
        self.objects[key] = data


def test_a_dropped_image_is_sampled_by_its_key_the_same_way_every_time():
    keys = [f"incoming/unlabeled/ds/{i}.png" for i in range(2000)]
    share = sum(key_draw(k) < 0.1 for k in keys) / len(keys)
    assert 0.08 < share < 0.12
    trial = SilentTrial(FakeCache(), ListSink, share=0.1, draw=lambda: 0.5)  # type: ignore[arg-type]
    assert [trial.sampled("ds", k) for k in keys] == [key_draw(k) < 0.1 for k in keys]
    assert not trial.sampled("ds", None)  # an API request: the random draw (0.5) is over the share
    assert not SilentTrial(FakeCache(False), ListSink, share=1.0).sampled("ds", None)  # type: ignore[arg-type]


def test_pairs_are_written_when_enough_wait_or_the_oldest_is_old_enough():
    from medimage.core.trial import Answer

    clock = [0.0]
    sink = ListSink()
    trial = SilentTrial(
        FakeCache(),  # type: ignore[arg-type]
        lambda: sink,
        share=1.0,
        flush_pairs=3,
        flush_s=60.0,
        clock=lambda: clock[0],
        now=lambda: "2026-12-01T00:00:00.000+00:00",
    )
    answer = Answer("v", "normal", 0.9, False, None, 1.0)
    pair = TrialPair("ds", "api", "t", answer, answer)
    for _ in range(2):
        trial._keep(pair)
        assert trial.flush() == []
    trial._keep(pair)
    [key] = trial.flush()
    assert (
        key.startswith("trials/ds/v/pairs/20261201T000000.000Z-") and len(sink.objects[key].splitlines()) == 3
    )
    trial._keep(pair)
    clock[0] = 59.0
    assert trial.flush() == []
    clock[0] = 60.0
    assert len(trial.flush()) == 1 and trial.pending() == 0
