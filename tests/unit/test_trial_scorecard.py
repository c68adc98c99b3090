"""The scorecard of a silent trial on pairs with known answers: every figure matches a recount by hand."""

from __future__ import annotations

import pytest

from medimage.core.evidence import wilson
from medimage.core.trial import Answer, TrialPair, percentile, scorecard

# (champion label, confidence, review, latency), (candidate ...), image key, reviewer's label
ROWS = [
    (("normal", 0.90, False, 10.0), ("normal", 0.95, False, 12.0), "k0", None),
    (("normal", 0.55, True, 11.0), ("pneumonia", 0.70, False, 13.0), "k1", "pneumonia"),
    (("pneumonia", 0.60, True, 12.0), ("pneumonia", 0.80, False, 14.0), "k2", "pneumonia"),
    (("pneumonia", 0.52, True, 13.0), ("normal", 0.51, True, 15.0), "k3", "pneumonia"),
    (("normal", 0.58, True, 14.0), ("normal", 0.66, False, 16.0), "k4", "normal"),
    (("pneumonia", 0.99, False, 15.0), ("pneumonia", 0.97, False, 17.0), None, None),
    (("normal", 0.80, False, 16.0), ("pneumonia", 0.60, True, 18.0), None, None),
    (("normal", 0.85, False, 100.0), ("normal", 0.90, False, 200.0), None, None),
]


def pairs() -> list[TrialPair]:
    out = []
    for i, (champ, cand, key, _) in enumerate(ROWS):
        out.append(
            TrialPair(
                dataset="ds",
                source="s3" if key else "api",
                at=f"2026-12-01T00:00:0{i}+00:00",
                champion=Answer(
                    "v1", champ[0], champ[1], champ[2], "low_confidence" if champ[2] else None, champ[3]
                ),
                candidate=Answer(
                    "v2", cand[0], cand[1], cand[2], "low_confidence" if cand[2] else None, cand[3]
                ),
                image_key=key,
            )
        )
    return out


VERDICTS = {key: label for _, _, key, label in ROWS if key and label}


def test_the_figures_match_a_recount():
    card = scorecard("ds", "v2", pairs(), VERDICTS)
    assert card["pairs"] == 8 and card["by_source"] == {"api": 3, "s3": 5}
    assert card["champion_versions"] == ["v1"]
    # Same label on rows 0, 2, 4, 5, 7.
    assert card["agreement"]["count"] == 5 and card["agreement"]["rate"] == pytest.approx(5 / 8)
    assert card["agreement"]["low"] == pytest.approx(wilson(5, 8).low, abs=1e-6)
    assert card["disagreements"] == {"normal -> pneumonia": 2, "pneumonia -> normal": 1}
    review = card["review"]
    assert (review["champion"]["count"], review["candidate"]["count"]) == (4, 2)
    assert (review["both"], review["champion_only"], review["candidate_only"]) == (1, 3, 1)
    champion_mean = sum(r[0][1] for r in ROWS) / 8
    candidate_mean = sum(r[1][1] for r in ROWS) / 8
    assert card["confidence"]["champion_mean"] == pytest.approx(champion_mean, abs=1e-6)
    assert card["confidence"]["mean_shift"] == pytest.approx(candidate_mean - champion_mean, abs=1e-6)
    # Nearest rank: p50 of 8 values is the 4th, p95 the 8th.
    assert card["latency_ms"]["champion"] == {"p50": 13.0, "p95": 100.0}
    assert card["latency_ms"]["candidate"] == {"p50": 15.0, "p95": 200.0}
    # Reviewed k1..k4: champion right on k2, k3, k4; candidate right on k1, k2, k4.
    reviewed = card["reviewed"]
    assert reviewed["images"] == 4
    assert reviewed["champion_accuracy"]["count"] == 3 and reviewed["candidate_accuracy"]["count"] == 3
    assert (reviewed["candidate_only_right"], reviewed["champion_only_right"]) == (1, 1)


def test_pairs_of_another_candidate_are_left_out_and_an_empty_trial_has_no_rates():
    others = [
        TrialPair("ds", "api", "t", p.champion, Answer("v9", "x", 0.5, False, None, 1.0)) for p in pairs()
    ]
    card = scorecard("ds", "v2", others, {})
    assert card["pairs"] == 0 and card["agreement"]["rate"] is None
    assert card["latency_ms"]["champion"] == {"p50": None, "p95": None}
    assert card["reviewed"]["champion_accuracy"]["rate"] is None


def test_a_pair_round_trips_through_its_json():
    for pair in pairs():
        assert TrialPair.from_dict(pair.to_dict()) == pair


def test_percentile_is_nearest_rank():
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile(list(map(float, range(1, 21))), 95) == 19.0
    assert percentile([], 50) is None
