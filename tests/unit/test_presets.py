"""Labels and patient ids for every preset, on real Kermany file names."""

from __future__ import annotations

import pytest

from medimage.core.errors import RejectedInput, UnknownPreset
from medimage.core.presets import get_preset, preset_names


def test_all_four_presets_exist_with_80_10_10_splits():
    assert preset_names() == ["chestxray2017", "chestxray2017-binary", "folders", "oct2017"]
    for name in preset_names():
        assert get_preset(name).split_ratios == {"train": 0.8, "val": 0.1, "test": 0.1}


@pytest.mark.parametrize(
    ("folder", "filename", "label"),
    [
        ("NORMAL", "IM-0115-0001.jpeg", "normal"),
        ("NORMAL", "NORMAL2-IM-0372-0001.jpeg", "normal"),
        ("PNEUMONIA", "person1_bacteria_1.jpeg", "bacterial"),
        ("PNEUMONIA", "person1_virus_6.jpeg", "viral"),
        ("pneumonia", "person1180_virus_2010_0001.jpeg", "viral"),  # folder case does not matter
    ],
)
def test_chestxray2017_labels_from_folder_and_file_name(folder, filename, label):
    assert get_preset("chestxray2017").label_for(folder, filename) == label


def test_chestxray2017_pneumonia_without_kind_is_an_unknown_label():
    with pytest.raises(RejectedInput) as err:
        get_preset("chestxray2017").label_for("PNEUMONIA", "scan.jpeg")
    assert err.value.code == "unknown_label"


@pytest.mark.parametrize(("folder", "label"), [("NORMAL", "normal"), ("PNEUMONIA", "pneumonia")])
def test_binary_preset_uses_the_folder(folder, label):
    assert get_preset("chestxray2017-binary").label_for(folder, "person3_virus_1.jpeg") == label


@pytest.mark.parametrize("folder", ["NORMAL", "CNV", "DRUSEN", "DME"])
def test_oct2017_labels(folder):
    assert get_preset("oct2017").label_for(folder, f"{folder}-1016042-1.jpeg") == folder


def test_unknown_folder_is_rejected_for_fixed_class_presets():
    for name in ("chestxray2017", "chestxray2017-binary", "oct2017"):
        with pytest.raises(RejectedInput) as err:
            get_preset(name).label_for("COVID", "x.jpeg")
        assert err.value.code == "unknown_label"


def test_folders_preset_takes_any_folder_as_label():
    preset = get_preset("folders")
    assert preset.label_for("cats", "a.png") == "cats"
    assert preset.patient_id("a.png") is None
    assert preset.classes_for({"b", "a"}) == ("a", "b")


@pytest.mark.parametrize(
    ("filename", "patient"),
    [
        ("person1_bacteria_1.jpeg", "person1"),
        ("person1_virus_6.jpeg", "person1"),
        ("person1180_virus_2010_0001.jpeg", "person1180"),
        ("IM-0115-0001.jpeg", "IM-0115"),
        ("IM-0117-0001-0002.jpeg", "IM-0117"),
        ("NORMAL2-IM-0372-0001.jpeg", "NORMAL2-IM-0372"),
        ("NORMAL2-IM-1427-0001-0002.jpeg", "NORMAL2-IM-1427"),
        ("scan.jpeg", None),
    ],
)
def test_chestxray_patient_ids_from_kermany_names(filename, patient):
    assert get_preset("chestxray2017").patient_id(filename) == patient
    assert get_preset("chestxray2017-binary").patient_id(filename) == patient


def test_oct_patient_id_is_shared_across_classes():
    preset = get_preset("oct2017")
    assert preset.patient_id("CNV-1016042-1.jpeg") == "1016042"
    assert preset.patient_id("DRUSEN-1016042-7.jpeg") == "1016042"


def test_unknown_preset_names_the_known_ones():
    with pytest.raises(UnknownPreset, match="known presets: chestxray2017"):
        get_preset("mnist")
