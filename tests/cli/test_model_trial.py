"""`medimage model scorecard|promote-candidate|drop-candidate` on moto S3: the scorecard is recounted from
the stored pairs and joined with the reviewer's verdicts; ending a trial records it in the registry."""

from __future__ import annotations

import json
from typing import Any

from medimage.core.layout import prediction_key
from medimage.core.registry import ModelEntry, ProductionPointer, nominate
from medimage.core.trial import Answer, TrialPair

from .conftest import BUCKET

DS = "chestxray2017"


def entry(version: str) -> ModelEntry:
    return ModelEntry(version, f"models/{DS}/{version}/model.tflite", "cd" * 32, "2026-12-01T00:00:00+00:00")


def put(s3: Any, key: str, body: Any) -> None:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    s3.put_object(Bucket=BUCKET, Key=key, Body=data)


def read(s3: Any, key: str) -> Any:
    return json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())


def pair(i: int, champion: str, candidate: str, review: bool, key: str | None) -> TrialPair:
    return TrialPair(
        DS,
        "s3" if key else "api",
        f"2026-12-01T00:00:{i:02d}+00:00",
        Answer("v1", champion, 0.6, review, "low_confidence" if review else None, 10.0 + i),
        Answer("v2", candidate, 0.8, False, None, 20.0 + i),
        key,
    )


def trial_world(s3: Any) -> list[TrialPair]:
    pointer = nominate(ProductionPointer(DS, (entry("v1"),)), entry("v2"), "v1", "2026-12-01T01:00:00+00:00")
    put(s3, f"models/{DS}/production.json", pointer.to_dict())
    keys = [f"incoming/unlabeled/{DS}/img{i}.jpeg" for i in range(3)]
    pairs = [
        pair(0, "normal", "bacterial", True, keys[0]),  # reviewer: bacterial -> candidate right
        pair(1, "viral", "viral", True, keys[1]),  # reviewer: viral -> both right
        pair(2, "normal", "normal", True, keys[2]),  # still in the queue: no verdict
        pair(3, "normal", "normal", False, None),
    ]
    for i, verdict in ((0, "bacterial"), (1, "viral")):
        put(s3, prediction_key(DS, keys[i]), {"label": pairs[i].champion.label, "review": {"label": verdict}})
    put(s3, prediction_key(DS, keys[2]), {"label": "normal"})
    lines = [json.dumps(p.to_dict()) for p in pairs]
    put(s3, f"trials/{DS}/v2/pairs/a.jsonl", ("\n".join(lines[:2]) + "\n").encode())
    put(s3, f"trials/{DS}/v2/pairs/b.jsonl", ("\n".join(lines[2:]) + "\nnot json\n").encode())
    return pairs


def test_the_scorecard_is_recounted_from_the_pairs_and_the_verdicts(s3, cli):
    trial_world(s3)
    run = cli("model", "scorecard", "--dataset", DS, "--bucket", BUCKET, "--json")
    assert run.code == 0, run.err
    card = run.json()
    assert card["pairs"] == 4 and card["agreement"]["count"] == 3
    assert card["review"]["champion"]["count"] == 3 and card["review"]["candidate"]["count"] == 0
    reviewed = card["reviewed"]
    assert reviewed["images"] == 2
    assert reviewed["champion_accuracy"]["count"] == 1 and reviewed["candidate_accuracy"]["count"] == 2
    assert card["latency_ms"]["candidate"] == {"p50": 21.0, "p95": 23.0}
    assert read(s3, f"trials/{DS}/v2/scorecard.json") == card
    text = cli("model", "scorecard", "--dataset", DS, "--bucket", BUCKET)
    assert text.code == 0 and "agreement" in text.out and "candidate accuracy" in text.out


def test_promoting_the_candidate_records_the_trial_and_its_scorecard(s3, cli):
    trial_world(s3)
    run = cli("model", "promote-candidate", "--dataset", DS, "--bucket", BUCKET, "--json")
    assert run.code == 0, run.err
    pointer = read(s3, f"models/{DS}/production.json")
    assert pointer["version"] == "v2" and pointer["candidate"] is None
    [trial] = pointer["trials"]
    assert trial["outcome"] == "promoted" and trial["scorecard"]["pairs"] == 4
    listed = cli("model", "list", "--dataset", DS, "--bucket", BUCKET)
    assert "trial of v2" in listed.out and "promoted" in listed.out
    again = cli("model", "promote-candidate", "--dataset", DS, "--bucket", BUCKET)
    assert again.code != 0 and "no candidate" in again.err


def test_dropping_the_candidate_keeps_production(s3, cli):
    trial_world(s3)
    assert "candidate v2" in cli("model", "list", "--dataset", DS, "--bucket", BUCKET).out
    run = cli("model", "drop-candidate", "--dataset", DS, "--bucket", BUCKET, "--reason", "misses viral")
    assert run.code == 0, run.err
    pointer = read(s3, f"models/{DS}/production.json")
    assert pointer["version"] == "v1" and pointer["candidate"] is None
    assert pointer["trials"][0]["outcome"] == "dropped" and pointer["trials"][0]["reason"] == "misses viral"
