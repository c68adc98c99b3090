"""Split assignment: deterministic, patient-grouped, close to the preset ratios."""

from __future__ import annotations

from collections import Counter

from medimage.core.presets import get_preset
from medimage.core.splits import assign_split, group_of

RATIOS = {"train": 0.8, "val": 0.1, "test": 0.1}


def test_same_group_same_split_every_time():
    assert {assign_split("ds", "patient:person7", RATIOS) for _ in range(5)} == {
        assign_split("ds", "patient:person7", RATIOS)
    }


def test_a_patient_never_straddles_splits_whatever_the_image():
    preset = get_preset("chestxray2017")
    names = [
        f"person{p}_{kind}_{i}.jpeg" for p in range(200) for kind in ("bacteria", "virus") for i in range(3)
    ]
    split_of_patient: dict[str, set[str]] = {}
    for i, name in enumerate(names):
        patient = preset.patient_id(name)
        split = assign_split("chestxray2017", group_of(patient, f"{i:064x}"), preset.split_ratios)
        split_of_patient.setdefault(patient, set()).add(split)
    assert all(len(splits) == 1 for splits in split_of_patient.values())


def test_images_without_patient_are_grouped_by_content_hash():
    assert group_of(None, "ab" * 32) == "sha256:" + "ab" * 32
    assert group_of("p1", "ab" * 32) == "patient:p1"


def test_ratios_are_respected_on_many_groups():
    counts = Counter(assign_split("ds", f"patient:{i}", RATIOS) for i in range(20000))
    assert abs(counts["train"] / 20000 - 0.8) < 0.015
    assert abs(counts["val"] / 20000 - 0.1) < 0.01
    assert abs(counts["test"] / 20000 - 0.1) < 0.01


def test_adding_data_never_moves_an_existing_group():
    before = {g: assign_split("ds", g, RATIOS) for g in (f"patient:{i}" for i in range(500))}
    # new groups arrive; the old ones are assigned again
    _ = [assign_split("ds", f"patient:new{i}", RATIOS) for i in range(500)]
    assert before == {g: assign_split("ds", g, RATIOS) for g in before}


def test_the_dataset_name_salts_the_assignment():
    groups = [f"patient:{i}" for i in range(200)]
    a = [assign_split("a", g, RATIOS) for g in groups]
    b = [assign_split("b", g, RATIOS) for g in groups]
    assert a != b
